"""The worker's own dashboard pages: server-rendered HTML for people, next to the JSON API.

=================================  =================================================================
``GET /``                          the datasets this worker owns: rating, band, ready, links
``GET /datasets/{dataset}``        one dataset: rating and factors, MAP / coverage / balance, the
                                   per-label table (worst AP first), recommended actions, drift
                                   events, the top 10 suggestions of each kind
=================================  =================================================================

The pages need nothing from outside the worker (inline CSS, no script, no CDN: users may be
air-gapped) and reload themselves every `REFRESH_SECONDS` (``<meta http-equiv=refresh>``).
They follow the API's bearer-token rule: with ``REFINERY_API_TOKEN`` set, a browser needs a
proxy that adds ``Authorization: Bearer <token>`` (docs/service.md).

The HTML is built by plain functions (`render_index`, `render_dataset`, `render_missing`,
`render_unauthorised`) from `schemas` records, so it is tested without Kafka; every string that
comes from data (dataset and label names, reasons, message ids) is escaped. `Pages` gathers the
records from the worker's `agents.worker.app.Service`; `agents.web.api.register` wires it.

>>> from schemas import Balance, Factor, LabelMetrics, MetricsSnapshot, Rating
>>> snapshot = MetricsSnapshot(dataset="support", timestamp=0, model_version=3, reviewed=3,
...     labels={"<b>Card</b>": LabelMetrics(precision=0.9, recall=0.75, f1=0.818, average_precision=0.88,
...                                         threshold=0.41, support=8, pinned=12)},
...     map=0.88, coverage=0.6, balance=Balance(score=70.0, similarity=0.9, shuffle_share=0.2),
...     rating=Rating(score=72.5, band="Good", ready=False, factors={"coverage": Factor(score=60.0, band="Average")}))
>>> page = render_dataset(snapshot, [])
>>> "72.5" in page, "&lt;b&gt;Card&lt;/b&gt;" in page, "<b>Card</b>" in page
(True, True, False)
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from html import escape
from urllib.parse import quote

from schemas import SUGGESTION_KINDS, LabelMetrics, MetricsSnapshot, Suggestion, SuggestionList

__all__ = [
    "REFRESH_SECONDS",
    "SUGGESTIONS_SHOWN",
    "ACTIONS_SHOWN",
    "IndexRow",
    "Pages",
    "render_index",
    "render_dataset",
    "render_missing",
    "render_unauthorised",
]

REFRESH_SECONDS = 5
SUGGESTIONS_SHOWN = 10
ACTIONS_SHOWN = 5  # the rest are folded away (in the order the engine ranks them)

#: One row of the index: ``(dataset, partition, latest published metrics or None)``.
IndexRow = tuple[str, int, MetricsSnapshot | None]

_KIND_TITLES = {
    "check_label": "Check label: reviews where a label may be misapplied",
    "missed_label": "Missed label: reviews where a label may be missing",
    "teach_label": "Teach label: messages the model is least sure of for a weak label",
    "low_confidence": "Low confidence: messages no informative label covers",
    "rebalance": "Rebalance: messages least like the reviewed ones",
    "shuffle": "Shuffle: an unbiased random sample of the stream",
}

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2327;background:#f4f5f7}
header{background:#1d2733;color:#fff;padding:10px 24px;display:flex;gap:24px;align-items:baseline;flex-wrap:wrap}
header a{color:#cfe3ff}header .brand{font-weight:600;font-size:16px;color:#fff;text-decoration:none}
main{padding:16px 24px;max-width:1300px}
h1{font-size:22px;margin:4px 0 12px}h2{font-size:16px;margin:22px 0 8px}h3{font-size:14px;margin:14px 0 6px}
.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:10px 14px;min-width:130px}
.card .k{color:#5f6b7a;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:22px;font-weight:600}.card .s{color:#5f6b7a;font-size:12px}
table{border-collapse:collapse;background:#fff;border:1px solid #dde1e6;margin:4px 0 8px;max-width:100%}
th,td{padding:4px 10px;border-bottom:1px solid #eceff2;text-align:left;vertical-align:top}
td:not(.n){overflow-wrap:anywhere}td.n{white-space:nowrap}
th{background:#f0f2f5;font-weight:600;font-size:12px;white-space:nowrap}td:first-child{white-space:nowrap}td.n{text-align:right;font-variant-numeric:tabular-nums}
.band{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff}
.Poor{background:#c0392b}.Average{background:#d68910}.Good{background:#27ae60}.Excellent{background:#1e8449}
.ready{color:#1e8449;font-weight:600}.notready{color:#a04000;font-weight:600}
.red{color:#c0392b;font-weight:600}.amber{color:#b9770e;font-weight:600}
.note{background:#fff8e1;border:1px solid #f0d98c;border-radius:6px;padding:10px 14px;max-width:900px}
summary{cursor:pointer;color:#2c5d9e;margin:2px 0 6px}.muted{color:#5f6b7a}ul{margin:4px 0 8px 0;padding-left:20px}footer{padding:8px 24px 24px;color:#5f6b7a;font-size:12px}
"""


# -- formatting ----------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 3) -> str:
    """A number for a table cell; an undefined value (too few reviews) is a dash.

    >>> _num(0.12345), _num(None), _num(72.456, 1)
    ('0.123', '–', '72.5')
    """
    return "–" if value is None else f"{value:.{digits}f}"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _when(timestamp: float) -> str:
    """An epoch time in UTC, to the second.

    >>> _when(0)
    '1970-01-01 00:00:00 UTC'
    """
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


def _dataset_href(dataset: str, suffix: str = "") -> str:
    return escape(f"/datasets/{quote(dataset, safe='')}{suffix}")


def _band(band: str) -> str:
    return f'<span class="band {escape(band)}">{escape(band)}</span>'


def _ready(ready: bool) -> str:
    return '<span class="ready">ready</span>' if ready else '<span class="notready">not ready</span>'


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    """An HTML table; ``rows`` hold HTML already escaped, ``numeric`` columns right-aligned."""
    head = "".join(f"<th{' class=n' if i in numeric else ''}>{escape(h)}</th>" for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f"<td{' class=n' if i in numeric else ''}>{cell}</td>" for i, cell in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _page(title: str, body: str, refresh: bool = True) -> str:
    meta = f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">' if refresh else ""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">{meta}'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} · Refinery</title><style>{_CSS}</style></head><body>"
        f'<header><a class="brand" href="/">Refinery</a><a href="/">datasets</a>'
        f'<a href="/datasets">/datasets (JSON)</a><a href="/metrics">/metrics</a><a href="/readyz">/readyz</a></header>'
        f"<main>{body}</main>"
        f"<footer>{'This page reloads every %d s. ' % REFRESH_SECONDS if refresh else ''}"
        f"Rendered {escape(_when(time.time()))}.</footer></body></html>"
    )


def _card(key: str, value: str, sub: str = "") -> str:
    return f'<div class="card"><div class="k">{escape(key)}</div><div class="v">{value}</div><div class="s">{sub}</div></div>'


# -- pages ----------------------------------------------------------------------------------------


def render_index(rows: Sequence[IndexRow], *, ready: bool = True) -> str:
    """The list of datasets this worker owns, with their rating, band and ready flag.

    ``rows`` are ``(dataset, partition, latest metrics or None)``; ``ready`` says whether every
    assigned partition is restored (`agents.worker.app.Service.ready`).

    >>> "owns no datasets yet" in render_index([])
    True
    """
    parts = ["<h1>Datasets on this worker</h1>"]
    if not ready:
        parts.append(
            '<p class="note">This worker is still restoring its partitions from their snapshots; '
            "datasets appear as they are restored.</p>"
        )
    if not rows:
        parts.append(
            '<div class="note">This worker owns no datasets yet. Send messages to the <code>messages</code> '
            "topic keyed by their dataset (or run <code>refinery demo</code>); each dataset appears here "
            "once its first message is processed. With several workers, each owns the datasets of its "
            "partitions: look on the others too.</div>"
        )
        return _page("Datasets", "".join(parts))
    table_rows = []
    for dataset, partition, snapshot in rows:
        link = f'<a href="{_dataset_href(dataset)}">{escape(dataset)}</a>'
        api = f'<a href="{_dataset_href(dataset, "/metrics")}">metrics</a>'
        if snapshot is None:
            table_rows.append(
                [link, str(partition), '<span class="muted">no metrics yet</span>', "", "", "", "", "", api]
            )
            continue
        r = snapshot.rating
        table_rows.append(
            [
                link,
                str(partition),
                f"{r.score:.1f}",
                _band(r.band),
                _ready(r.ready),
                str(snapshot.reviewed),
                _percent(snapshot.coverage),
                _num(snapshot.map),
                api,
            ]
        )
    parts.append(
        _table(
            ["dataset", "partition", "rating", "band", "ready", "reviewed", "coverage", "MAP", "JSON"],
            table_rows,
            numeric=(1, 2, 5, 6, 7),
        )
    )
    parts.append('<p class="muted">Ratings are those last published (every few seconds, when a dataset changed).</p>')
    return _page("Datasets", "".join(parts))


def _factor_metrics(metrics: dict[str, float | None]) -> str:
    return ", ".join(f"{escape(k)} {_num(v)}" for k, v in metrics.items()) or '<span class="muted">–</span>'


def _worst_first(labels: dict[str, LabelMetrics]) -> list[tuple[str, LabelMetrics]]:
    """Labels by average precision, worst first; labels without one (too few positives) last."""
    return sorted(
        labels.items(), key=lambda item: (item[1].average_precision is None, item[1].average_precision or 0.0, item[0])
    )


def _warnings(m: LabelMetrics) -> str:
    if not m.warnings:
        return ""
    items = "".join(
        f'<li><span class="{escape(w.severity)}">{escape(w.severity)}</span> {escape(w.message)}'
        f"<br><span class=muted>→ {escape(w.action)}</span></li>"
        for w in m.warnings
    )
    return f"<ul>{items}</ul>"


def _suggestions_section(lists: Sequence[SuggestionList]) -> str:
    by_kind: dict[str, list[Suggestion]] = {}
    for suggestion_list in lists:
        by_kind.setdefault(suggestion_list.kind, []).extend(suggestion_list.items)
    parts = [f"<h2>What to review next (top {SUGGESTIONS_SHOWN} of each kind)</h2>"]
    for kind in SUGGESTION_KINDS:
        items = by_kind.get(kind, [])[:SUGGESTIONS_SHOWN]  # the engine's order: best first
        parts.append(f"<h3>{escape(_KIND_TITLES.get(kind, kind))} <span class=muted>({escape(kind)})</span></h3>")
        if not items:
            parts.append('<p class="muted">No suggestions of this kind yet.</p>')
            continue
        parts.append(
            _table(
                ["message id", "label", "score", "reason"],
                [[escape(s.message_id), escape(s.label or "–"), _num(s.score), escape(s.reason)] for s in items],
                numeric=(2,),
            )
        )
    return "".join(parts)


def render_dataset(snapshot: MetricsSnapshot, suggestions: Sequence[SuggestionList]) -> str:
    """One dataset's page from its metrics and its suggestion lists (the first `SUGGESTIONS_SHOWN`
    items of each kind are shown, in the lists' order).

    >>> from schemas import Balance, MetricsSnapshot, Rating
    >>> empty = MetricsSnapshot(dataset="new", timestamp=0, model_version=0, reviewed=0, labels={}, map=None,
    ...     coverage=None, balance=Balance(score=None, similarity=None, shuffle_share=None),
    ...     rating=Rating(score=0.0, band="Poor", ready=False))
    >>> "No reviews yet" in render_dataset(empty, [])
    True
    """
    s, r = snapshot, snapshot.rating
    name = escape(s.dataset)
    parts = [f"<h1>{name} {_band(r.band)}</h1>"]
    balance = s.balance
    parts.append(
        '<div class="cards">'
        + _card("rating", f"{r.score:.1f}", f"{escape(r.band)}, {_ready(r.ready)}")
        + _card("MAP", _num(s.map), "mean average precision" if s.map is not None else "too few reviews per label yet")
        + _card("coverage", _percent(s.coverage), "live messages with an informative label")
        + _card(
            "balance",
            _num(balance.score, 1),
            f"similarity {_num(balance.similarity)}, shuffle share {_percent(balance.shuffle_share)}",
        )
        + _card("reviewed", str(s.reviewed), f"model version {s.model_version}")
        + _card("labels", str(len(s.labels)), f"as of {escape(_when(s.timestamp))}")
        + "</div>"
    )
    if s.reviewed == 0:
        parts.append(
            '<div class="note"><b>No reviews yet.</b> The model learns only from reviews: until people '
            "label some messages (annotations on the <code>annotations</code> topic), it predicts no label, "
            "the rating stays Poor and the per-label table is empty. Start with the "
            "<i>shuffle</i> suggestions below: an unbiased sample of the stream.</div>"
        )

    parts.append("<h2>Rating factors</h2>")
    parts.append(
        _table(
            ["factor", "score", "band", "metrics"],
            [[escape(k), f"{f.score:.1f}", _band(f.band), _factor_metrics(f.metrics)] for k, f in r.factors.items()],
            numeric=(1,),
        )
    )

    parts.append("<h2>Recommended actions</h2>")
    if s.actions:
        header = ["action", "label", "why", "expected gain"]
        rows = [[escape(a.kind), escape(a.label or "–"), escape(a.why), _num(a.expected_gain, 1)] for a in s.actions]
        parts.append(_table(header, rows[:ACTIONS_SHOWN], numeric=(3,)))
        if len(rows) > ACTIONS_SHOWN:
            parts.append(
                f"<details><summary>{len(rows) - ACTIONS_SHOWN} more actions</summary>"
                f"{_table(header, rows[ACTIONS_SHOWN:], numeric=(3,))}</details>"
            )
    else:
        parts.append('<p class="muted">None: nothing stands out.</p>')

    parts.append("<h2>Labels, worst average precision first</h2>")
    if s.labels:
        rows = [
            [
                escape(label),
                _num(m.precision),
                _num(m.recall),
                _num(m.f1),
                _num(m.average_precision),
                _num(m.threshold),
                str(m.support),
                str(m.pinned),
                _warnings(m),
            ]
            for label, m in _worst_first(s.labels)
        ]
        parts.append(
            _table(
                ["label", "precision", "recall", "F1", "AP", "threshold", "support", "pinned", "warnings"],
                rows,
                numeric=(1, 2, 3, 4, 5, 6, 7),
            )
        )
        parts.append(
            '<p class="muted">Over the validation window of recent reviews; – means too few reviews to say.</p>'
        )
    else:
        parts.append('<p class="muted">No labels yet: a label appears with its first review.</p>')

    parts.append("<h2>Drift events</h2>")
    if s.drift:
        parts.append(
            _table(
                ["when", "label", "kind", "detail"],
                [[escape(_when(d.when)), escape(d.label or "–"), escape(d.kind), escape(d.detail)] for d in s.drift],
            )
        )
    else:
        parts.append('<p class="muted">None detected.</p>')

    parts.append(_suggestions_section(suggestions))
    kinds = " · ".join(
        f'<a href="{_dataset_href(s.dataset, "/suggestions?kind=" + k)}">{escape(k)}</a>' for k in SUGGESTION_KINDS
    )
    parts.append(
        f'<h2>Machine-readable</h2><p><a href="{_dataset_href(s.dataset, "/metrics")}">metrics (JSON)</a> · '
        f'suggestions (JSON): {kinds} · <a href="/metrics">Prometheus /metrics</a></p>'
    )
    return _page(s.dataset, "".join(parts))


def render_missing(dataset: str, owned: Sequence[str]) -> str:
    """The 404 page: this worker does not own ``dataset``.

    >>> "not owned by this worker" in render_missing("x", ["a"])
    True
    """
    links = ", ".join(f'<a href="{_dataset_href(d)}">{escape(d)}</a>' for d in owned) or "none"
    return _page(
        "Not here",
        f"<h1>{escape(dataset)}</h1><p class=note>Dataset <b>{escape(dataset)}</b> is not owned "
        f"by this worker (owned here: {links}). With several workers, open the one that owns "
        f"the dataset's partition.</p>",
        refresh=False,
    )


def render_unauthorised() -> str:
    """The 401 page: the worker has ``REFINERY_API_TOKEN`` set and the request did not carry it."""
    return _page(
        "Token required",
        "<h1>A bearer token is required</h1><p class=note>This worker has "
        "<code>REFINERY_API_TOKEN</code> set: every page and API route but <code>/healthz</code> needs the "
        "header <code>Authorization: Bearer &lt;token&gt;</code>. Browsers do not send one by themselves: "
        "open the pages through a proxy that adds it (docs/service.md, Dashboard pages).</p>",
        refresh=False,
    )


# -- gathering -----------------------------------------------------------------------------------


class Pages:
    """The pages' answers, ``(status, html)``, given the worker's `agents.worker.app.Service`."""

    def __init__(self, service) -> None:
        self.service = service

    def _owned(self) -> list[str]:
        return sorted(name for part in self.service.partitions.values() for name in part.engines)

    def index(self) -> tuple[int, str]:
        rows = [
            (name, p, self.service.latest_metrics.get(name))
            for p, part in sorted(self.service.partitions.items())
            for name in sorted(part.engines)
        ]
        return 200, render_index(rows, ready=self.service.ready)

    async def dataset(self, dataset: str) -> tuple[int, str]:
        part = self.service.owner_of(dataset)
        if part is None:
            return 404, render_missing(dataset, self._owned())
        engine = part.engines[dataset]

        def gather():
            now = time.time()
            snapshot = engine.metrics(now=now)
            lists = []
            if hasattr(engine, "suggestions"):
                lists = [
                    SuggestionList(
                        dataset=dataset,
                        timestamp=now,
                        model_version=snapshot.model_version,
                        kind=kind,
                        label=None,
                        items=tuple(engine.suggestions(kind, limit=SUGGESTIONS_SHOWN)),
                    )
                    for kind in SUGGESTION_KINDS
                ]
            return snapshot, lists

        async with self.service.lock:
            snapshot, lists = await self.service.in_thread(gather)
        return 200, render_dataset(snapshot, lists)
