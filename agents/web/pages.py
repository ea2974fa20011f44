"""The worker's own dashboard pages: server-rendered HTML for people, next to the JSON API.

=================================  =================================================================
``GET /``                          the datasets this worker owns: rating, band, ready, links
``GET /datasets/{dataset}``        one dataset: rating and factors, MAP / coverage / balance, the
                                   review menu, recommended actions (each opening its queue), charts
                                   over time and the live label mix, the per-label table (worst AP
                                   first, sortable), drift events, the top 10 suggestions of each kind
``GET /datasets/{d}/label?name=L`` one label: figures, warnings, precision-recall curve, its queues
=================================  =================================================================

The pages need nothing from outside the worker (inline CSS, the worker's own script, no CDN:
users may be air-gapped). They update in place by polling the workbench's live JSON (and
reload every `REFRESH_SECONDS` without JavaScript). With ``REFINERY_API_TOKEN`` set, a browser
signs in at ``/login`` (`agents.web.workbench`); the shared layout is `agents.web.layout`.

The HTML is built by plain functions (`render_index`, `render_dataset`, `render_label`,
`render_missing`, `render_unauthorised`) from `schemas` records, so it is tested without Kafka; every string that
comes from data (dataset and label names, reasons, message ids) is escaped. `Pages` gathers the
records from the worker (through `agents.web.service_view`, engine calls in the engine thread);
`agents.web.api.register` wires it.

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
from collections.abc import Sequence
from html import escape
from urllib.parse import quote

from agents.web.layout import CHART_TITLES as _CHART_TITLES
from agents.web.layout import KIND_LABELS as _KIND_LABELS
from agents.web.layout import KIND_TITLES as _KIND_TITLES
from agents.web.layout import REFRESH_SECONDS, STATIC_SCRIPT, label_href, layout, review_href
from agents.web.layout import band as _band
from agents.web.layout import card as _card
from agents.web.layout import dataset_href as _dataset_href
from agents.web.layout import live as _live
from agents.web.layout import num as _num
from agents.web.layout import page as _page
from agents.web.layout import percent as _percent
from agents.web.layout import ready_badge as _ready
from agents.web.layout import table as _table
from agents.web.layout import when as _when
from schemas import SUGGESTION_KINDS, LabelMetrics, MetricsSnapshot, Suggestion, SuggestionList

__all__ = [
    "REFRESH_SECONDS",
    "STATIC_SCRIPT",
    "SUGGESTIONS_SHOWN",
    "ACTIONS_SHOWN",
    "IndexRow",
    "Pages",
    "render_index",
    "render_dataset",
    "render_label",
    "render_missing",
    "render_unauthorised",
    "index_live_values",
    "dataset_live_values",
    "index_version",
    "dataset_version",
    "action_link",
]

SUGGESTIONS_SHOWN = 10
ACTIONS_SHOWN = 5  # the rest are folded away (in the order the engine ranks them)

#: One row of the index: ``(dataset, partition, latest published metrics or None)``.
IndexRow = tuple[str, int, MetricsSnapshot | None]


# -- pages ----------------------------------------------------------------------------------------


def index_live_values(rows: Sequence[IndexRow]) -> dict[str, str]:
    """The values of the index that update in place."""
    values = {}
    for dataset, _, snapshot in rows:
        if snapshot is not None:
            values.update(
                {
                    f"rating:{dataset}": f"{snapshot.rating.score:.1f}",
                    f"reviewed:{dataset}": str(snapshot.reviewed),
                    f"coverage:{dataset}": _percent(snapshot.coverage),
                    f"map:{dataset}": _num(snapshot.map),
                }
            )
    return values


def index_version(rows: Sequence[IndexRow]) -> int:
    """Grows when the index needs new rows: a dataset appeared, or its first metrics."""
    return len(rows) + sum(snapshot is not None for _, _, snapshot in rows)


def dataset_version(snapshot: MetricsSnapshot) -> int:
    """Grows when the dataset page needs new rows: a label appeared."""
    return len(snapshot.labels)


def render_index(rows: Sequence[IndexRow], *, ready: bool = True, **chrome) -> str:
    """The list of datasets this worker owns, with their rating, band and ready flag.

    ``rows`` are ``(dataset, partition, latest metrics or None)``; ``ready`` says whether every
    assigned partition is restored (`agents.worker.app.Service.ready`).

    >>> "owns no datasets yet" in render_index([])
    True
    """
    chrome.setdefault("live_url", "/live")
    chrome.setdefault("live_version", index_version(rows))
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
        return layout("Datasets", "".join(parts), **chrome)
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
                _live(f"rating:{dataset}", f"{r.score:.1f}"),
                _band(r.band),
                _ready(r.ready),
                _live(f"reviewed:{dataset}", str(snapshot.reviewed)),
                _live(f"coverage:{dataset}", _percent(snapshot.coverage)),
                _live(f"map:{dataset}", _num(snapshot.map)),
                api,
            ]
        )
    parts.append(
        _table(
            ["dataset", "partition", "rating", "band", "ready", "reviewed", "coverage", "MAP", "JSON"],
            table_rows,
            numeric=(1, 2, 5, 6, 7),
            sortable=True,
        )
    )
    parts.append(
        '<p class="muted">Ratings are those last published (every few seconds, when a dataset changed). '
        "Open a dataset to review its messages.</p>"
    )
    return layout("Datasets", "".join(parts), **chrome)


def _factor_metrics(metrics: dict[str, float | None]) -> str:
    return ", ".join(f"{escape(k)} {_num(v)}" for k, v in metrics.items()) or '<span class="muted">–</span>'


def _worst_first(labels: dict[str, LabelMetrics]) -> list[tuple[str, LabelMetrics]]:
    """Labels by average precision, worst first; labels without one (too few positives) last."""
    return sorted(
        labels.items(), key=lambda item: (item[1].average_precision is None, item[1].average_precision or 0.0, item[0])
    )


def _warnings(m: LabelMetrics, dataset: str | None = None, label: str | None = None) -> str:
    """A label's warnings; with ``dataset`` and ``label``, each action that is a suggestion kind
    links to its review queue."""
    if not m.warnings:
        return ""

    def action(w) -> str:
        if dataset is not None and w.action in SUGGESTION_KINDS:
            return (
                f'<a data-kind="{escape(w.action)}" href="{review_href(dataset, w.action, label)}">'
                f"{escape(w.action)}</a>"
            )
        return escape(w.action)

    items = "".join(
        f'<li><span class="{escape(w.severity)}">{escape(w.severity)}</span> {escape(w.message)}'
        f"<br><span class=muted>→ {action(w)}</span></li>"
        for w in m.warnings
    )
    return f"<ul>{items}</ul>"


def _suggestions_section(dataset: str, lists: Sequence[SuggestionList]) -> str:
    by_kind: dict[str, list[Suggestion]] = {}
    for suggestion_list in lists:
        by_kind.setdefault(suggestion_list.kind, []).extend(suggestion_list.items)
    parts = [f"<h2>What to review next (top {SUGGESTIONS_SHOWN} of each kind)</h2>"]
    for kind in SUGGESTION_KINDS:
        items = by_kind.get(kind, [])[:SUGGESTIONS_SHOWN]  # the engine's order: best first
        parts.append(
            f"<h3>{escape(_KIND_TITLES.get(kind, kind))} <span class=muted>({escape(kind)})</span> "
            f'<a class="go" href="{review_href(dataset, kind)}">review this queue</a></h3>'
        )
        if not items:
            parts.append('<p class="muted">No suggestions of this kind yet.</p>')
            continue
        parts.append(
            _table(
                ["message id", "label", "score", "reason"],
                [
                    [
                        f'<a href="{review_href(dataset, kind, s.label, s.message_id)}">{escape(s.message_id)}</a>',
                        escape(s.label or "–"),
                        _num(s.score),
                        escape(s.reason),
                    ]
                    for s in items
                ],
                numeric=(2,),
            )
        )
    return "".join(parts)


def action_link(dataset: str, kind: str, label: str | None) -> str:
    """Where a recommended action is carried out: its review queue, or the search page."""
    if kind == "search":
        return _dataset_href(dataset, "/search" + (f"?label={quote(label, safe='')}" if label else ""))
    if kind in SUGGESTION_KINDS:
        return review_href(dataset, kind, label)
    return _dataset_href(dataset)


def _actions_table(dataset: str, rows: Sequence) -> str:
    return _table(
        ["action", "label", "why", "expected gain", ""],
        [
            [
                escape(a.kind),
                escape(a.label or "–"),
                escape(a.why),
                _num(a.expected_gain, 1),
                f'<a class="go" data-kind="{escape(a.kind)}" href="{action_link(dataset, a.kind, a.label)}">'
                f"{'search' if a.kind == 'search' else 'open queue'}</a>",
            ]
            for a in rows
        ],
        numeric=(3,),
    )


def _queues_menu(dataset: str, labels: Sequence[str]) -> str:
    """Every training mode, with a label picker for the kinds that take one."""
    plain = " ".join(
        f'<a class="button" href="{review_href(dataset, k)}">{escape(_KIND_LABELS[k])}</a>'
        for k in ("shuffle", "low_confidence", "rebalance", "teach_label", "check_label", "missed_label")
    )
    options = "".join(f'<option value="{escape(label)}">{escape(label)}</option>' for label in sorted(labels))
    by_label = (
        (
            f'<form method="get" action="{_dataset_href(dataset, "/review")}" class="inline">'
            f'<label>kind <select name="kind">'
            + "".join(
                f'<option value="{k}">{escape(_KIND_LABELS[k])}</option>'
                for k in ("teach_label", "check_label", "missed_label")
            )
            + f'</select></label> <label>label <select name="label">{options}</select></label> '
            f'<button type="submit">open</button></form>'
        )
        if labels
        else ""
    )
    search = (
        f'<form method="get" action="{_dataset_href(dataset, "/search")}" class="inline" role="search">'
        f'<label>search messages <input type="search" name="q" size="24"></label> <button type="submit">search</button></form>'
    )
    return f'<section class="queues" aria-label="review queues"><h2>Review</h2><p>{plain}</p><p>{by_label}</p><p>{search}</p></section>'


def dataset_live_values(snapshot: MetricsSnapshot) -> dict[str, str]:
    """The values of the dataset page that update in place (keys of its ``data-live`` elements)."""
    s, r = snapshot, snapshot.rating
    values = {
        "rating": f"{r.score:.1f}",
        "band": r.band,
        "map": _num(s.map),
        "coverage": _percent(s.coverage),
        "balance": _num(s.balance.score, 1),
        "reviewed": str(s.reviewed),
        "model_version": str(s.model_version),
        "labels": str(len(s.labels)),
    }
    for label, m in s.labels.items():
        values[f"pinned:{label}"] = str(m.pinned)
        values[f"ap:{label}"] = _num(m.average_precision)
        values[f"support:{label}"] = str(m.support)
    return values


def render_dataset(
    snapshot: MetricsSnapshot, suggestions: Sequence[SuggestionList], *, charts: dict[str, str] | None = None, **chrome
) -> str:
    """One dataset's page from its metrics and its suggestion lists (the first `SUGGESTIONS_SHOWN`
    items of each kind are shown, in the lists' order); ``charts`` are SVG by element id
    (`agents.web.workbench.dataset_charts`); ``chrome`` goes to `layout`.

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
        + _card("rating", _live("rating", f"{r.score:.1f}"), f"{escape(r.band)}, {_ready(r.ready)}")
        + _card(
            "MAP",
            _live("map", _num(s.map)),
            "mean average precision" if s.map is not None else "too few reviews per label yet",
        )
        + _card("coverage", _live("coverage", _percent(s.coverage)), "live messages with an informative label")
        + _card(
            "balance",
            _live("balance", _num(balance.score, 1)),
            f"similarity {_num(balance.similarity)}, shuffle share {_percent(balance.shuffle_share)}, "
            f"search share {_percent(balance.search_share)}",
        )
        + _card(
            "reviewed",
            _live("reviewed", str(s.reviewed)),
            f"model version {_live('model_version', str(s.model_version))}",
        )
        + _card("labels", _live("labels", str(len(s.labels))), f"as of {escape(_when(s.timestamp))}")
        + "</div>"
    )
    if s.reviewed == 0:
        parts.append(
            '<div class="note"><b>No reviews yet.</b> The model learns only from reviews: until people '
            "label some messages (annotations on the <code>annotations</code> topic), it predicts no label, "
            "the rating stays Poor and the per-label table is empty. Start with the "
            f'<a href="{review_href(s.dataset, "shuffle")}"><i>shuffle</i></a> queue: an unbiased sample '
            "of the stream.</div>"
        )
    parts.append(_queues_menu(s.dataset, list(s.labels)))

    parts.append("<h2>Recommended actions</h2>")
    if s.actions:
        parts.append(_actions_table(s.dataset, s.actions[:ACTIONS_SHOWN]))
        if len(s.actions) > ACTIONS_SHOWN:
            parts.append(
                f"<details><summary>{len(s.actions) - ACTIONS_SHOWN} more actions</summary>"
                f"{_actions_table(s.dataset, s.actions[ACTIONS_SHOWN:])}</details>"
            )
    else:
        parts.append('<p class="muted">None: nothing stands out.</p>')

    parts.append("<h2>Rating factors</h2>")
    parts.append(
        _table(
            ["factor", "score", "band", "metrics"],
            [[escape(k), f"{f.score:.1f}", _band(f.band), _factor_metrics(f.metrics)] for k, f in r.factors.items()],
            numeric=(1,),
            sortable=True,
        )
    )
    if charts:
        drift = (
            (
                "<ul>"
                + "".join(
                    f'<li><span class="amber">drift</span> {escape(_when(d.when))} '
                    f"{escape(d.label or 'label mix')}: {escape(d.detail)}</li>"
                    for d in s.drift[-5:]
                )
                + "</ul>"
            )
            if s.drift
            else '<p class="muted">No drift detected.</p>'
        )
        parts.append(
            '<h2>Over time and live</h2><div class="charts">'
            + "".join(
                f'<figure><div id="{escape(key)}">{svg}</div><figcaption>{escape(_CHART_TITLES.get(key, key))}'
                f"</figcaption>{drift if key == 'chart-mix' else ''}</figure>"
                for key, svg in charts.items()
            )
            + "</div>"
        )

    parts.append("<h2>Labels, worst average precision first</h2>")
    if s.labels:
        rows = [
            [
                f'<a href="{label_href(s.dataset, label)}">{escape(label)}</a>',
                _num(m.precision),
                _num(m.recall),
                _num(m.f1),
                _live(f"ap:{label}", _num(m.average_precision)),
                _num(m.threshold),
                _live(f"support:{label}", str(m.support)),
                _live(f"pinned:{label}", str(m.pinned)),
                _warnings(m, s.dataset, label),
            ]
            for label, m in _worst_first(s.labels)
        ]
        parts.append(
            _table(
                ["label", "precision", "recall", "F1", "AP", "threshold", "support", "pinned", "warnings"],
                rows,
                numeric=(1, 2, 3, 4, 5, 6, 7),
                sortable=True,
            )
        )
        parts.append(
            '<p class="muted">Over the validation window of recent reviews; – means too few reviews to say. '
            "Click a column to sort by it.</p>"
        )
    else:
        parts.append('<p class="muted">No labels yet: a label appears with its first review.</p>')

    parts.append("<h2>Drift events</h2>")
    if s.drift:
        parts.append(
            _table(
                ["when", "label", "kind", "detail"],
                [[escape(_when(d.when)), escape(d.label or "–"), escape(d.kind), escape(d.detail)] for d in s.drift],
                sortable=True,
            )
        )
    else:
        parts.append('<p class="muted">None detected.</p>')

    parts.append(_suggestions_section(s.dataset, suggestions))
    kinds = " · ".join(
        f'<a href="{_dataset_href(s.dataset, "/suggestions?kind=" + k)}">{escape(k)}</a>' for k in SUGGESTION_KINDS
    )
    parts.append(
        f'<h2>Machine-readable</h2><p><a href="{_dataset_href(s.dataset, "/metrics")}">metrics (JSON)</a> · '
        f'suggestions (JSON): {kinds} · <a href="/metrics">Prometheus /metrics</a></p>'
    )
    chrome.setdefault("live_url", _live_url(s.dataset))
    chrome.setdefault("live_version", dataset_version(s))
    return layout(s.dataset, "".join(parts), **chrome)


def _live_url(dataset: str) -> str:
    return f"/datasets/{quote(dataset, safe='')}/live"


def render_label(
    dataset: str, label: str, m: LabelMetrics, curve_svg: str, queues: dict[str, Sequence[Suggestion]], **chrome
) -> str:
    """One label's page: its metrics, warnings, precision-recall curve (``curve_svg``, from
    `agents.web.charts.pr_curve`) and the queues that concern it (``queues``: kind -> first items).

    >>> from schemas import LabelMetrics
    >>> m = LabelMetrics(precision=0.9, recall=0.5, f1=0.64, average_precision=0.7, threshold=0.4, support=9, pinned=30)
    >>> page = render_label("d", "Card > Lost", m, "<svg></svg>", {"check_label": []})
    >>> "Card &gt; Lost" in page and "/datasets/d/review?kind=check_label&amp;label=Card%20%3E%20Lost" in page
    True
    """
    name = escape(label)
    parts = [
        f'<p class="crumbs"><a href="{_dataset_href(dataset)}">{escape(dataset)}</a> › label</p><h1>{name}</h1>',
        '<div class="cards">'
        + _card("average precision", _live(f"ap:{label}", _num(m.average_precision)), "area under the curve")
        + _card("precision", _num(m.precision), f"at threshold {_num(m.threshold)}")
        + _card("recall", _num(m.recall), f"F1 {_num(m.f1)}")
        + _card("support", _live(f"support:{label}", str(m.support)), "positives in the window")
        + _card("pinned", _live(f"pinned:{label}", str(m.pinned)), "reviewed examples, all time")
        + "</div>",
    ]
    parts.append("<h2>Warnings</h2>" + (_warnings(m, dataset, label) or '<p class="muted">None.</p>'))
    t = m.thresholds
    parts.append(
        '<h2>Precision-recall curve</h2><div class="curve">'
        f'<figure><div id="chart-curve">{curve_svg}</div><figcaption>Out-of-sample scores of the validation '
        "window; the three thresholds marked.</figcaption></figure>"
        + _table(
            ["threshold", "value"],
            [
                ["balanced (max F1)", _num(t.balanced)],
                ["high precision", _num(t.high_precision)],
                ["high recall", _num(t.high_recall)],
                ["<b>in force</b>", f"<b>{_num(m.threshold)}</b>"],
            ],
            numeric=(1,),
        )
        + "</div>"
    )
    parts.append("<h2>Queues for this label</h2>")
    for kind, items in queues.items():
        parts.append(
            f'<h3>{escape(_KIND_TITLES.get(kind, kind))} <a class="go" data-kind="{escape(kind)}" '
            f'href="{review_href(dataset, kind, label)}">open queue</a></h3>'
        )
        if items:
            parts.append(
                _table(
                    ["message id", "score", "reason"],
                    [
                        [
                            f'<a href="{review_href(dataset, kind, label, s.message_id)}">{escape(s.message_id)}</a>',
                            _num(s.score),
                            escape(s.reason),
                        ]
                        for s in items
                    ],
                    numeric=(1,),
                    sortable=True,
                )
            )
        else:
            parts.append('<p class="muted">Nothing in this queue now.</p>')
    parts.append(
        f'<p><a class="button" href="{action_link(dataset, "search", label)}">Search for more examples</a></p>'
    )
    chrome.setdefault("live_url", _live_url(dataset))
    return layout(f"{label} · {dataset}", "".join(parts), **chrome)


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
        f"the dataset's partition. If its stream has just started, the dataset appears once "
        f"its first message is processed: this page reloads by itself.</p>",
    )


def render_unauthorised() -> str:
    """The 401 page: the worker has ``REFINERY_API_TOKEN`` set and the request did not carry it."""
    return _page(
        "Token required",
        "<h1>A bearer token is required</h1><p class=note>This worker has "
        "<code>REFINERY_API_TOKEN</code> set: every page and API route but <code>/healthz</code> needs the "
        "header <code>Authorization: Bearer &lt;token&gt;</code>, or a signed-in session: in a browser, "
        '<a href="/login">sign in</a> with your name and the token (docs/workbench.md).</p>',
        refresh=False,
    )


# -- gathering -----------------------------------------------------------------------------------


class Pages:
    """The pages' answers, ``(status, html)``, given the worker's ``Service``
    (read through `agents.web.service_view.WorkerView`)."""

    def __init__(self, service) -> None:
        from agents.web.service_view import worker_view

        self.worker = worker_view(service)

    def index(self, **chrome) -> tuple[int, str]:
        latest = self.worker.latest_metrics()
        rows = [(name, p, latest.get(name)) for p, name in self.worker.owned_rows()]
        return 200, render_index(rows, ready=self.worker.ready, **chrome)

    async def dataset(self, dataset: str, *, charts=None, **chrome) -> tuple[int, str]:
        """The dataset page; ``charts(dataset, mix)`` adds the charts (`agents.web.workbench`)."""
        from agents.web.service_view import label_mix

        engine = self.worker.engine(dataset)
        if engine is None:
            return 404, render_missing(dataset, self.worker.owned())

        def gather(engine):
            now = time.time()
            snapshot = engine.metrics(now=now)
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
            return snapshot, lists, (label_mix(engine) if charts is not None else None)

        snapshot, lists, mix = await self.worker.read_frozen(engine, gather)
        drawn = charts(dataset, mix) if charts is not None else None
        return 200, render_dataset(snapshot, lists, charts=drawn, **chrome)
