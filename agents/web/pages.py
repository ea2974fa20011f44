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
from html import escape
from typing import Iterable, Optional, Sequence
from urllib.parse import quote

from schemas import SUGGESTION_KINDS, LabelMetrics, MetricsSnapshot, Suggestion, SuggestionList

__all__ = ["REFRESH_SECONDS", "SUGGESTIONS_SHOWN", "ACTIONS_SHOWN", "IndexRow", "Pages", "render_index", "render_dataset",
           "render_missing", "render_unauthorised"]

REFRESH_SECONDS = 5
#: The worker's own script (sorting, live values, review shortcuts), served from the package.
STATIC_SCRIPT = "/static/workbench.js"
SUGGESTIONS_SHOWN = 10
ACTIONS_SHOWN = 5  # the rest are folded away (in the order the engine ranks them)

#: One row of the index: ``(dataset, partition, latest published metrics or None)``.
IndexRow = tuple[str, int, Optional[MetricsSnapshot]]

_KIND_TITLES = {
    "check_label": "Check label: reviews where a label may be misapplied",
    "missed_label": "Missed label: reviews where a label may be missing",
    "teach_label": "Teach label: messages the model is least sure of for a weak label",
    "low_confidence": "Low confidence: messages no informative label covers",
    "rebalance": "Rebalance: messages least like the reviewed ones",
    "shuffle": "Shuffle: an unbiased random sample of the stream",
}

_KIND_LABELS = {"check_label": "Check label", "missed_label": "Missed label", "teach_label": "Teach label",
                "low_confidence": "Low confidence", "rebalance": "Rebalance", "shuffle": "Shuffle", "search": "Search"}
_CHART_TITLES = {"chart-rating": "The rating and its four factors over time (0-100)",
                 "chart-coverage": "Coverage (% of live messages) and balance (0-100) over time",
                 "chart-mix": "Live label mix: share of recent live messages whose top prediction is each label"}

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
header nav{display:flex;gap:18px}header .spacer{flex:1}header .who{color:#fff}
form.inline{display:inline}button.link{background:none;border:0;color:#cfe3ff;text-decoration:underline;cursor:pointer;font:inherit;padding:0 0 0 8px}
a.button,button{display:inline-block;background:#fff;border:1px solid #9aa7b5;border-radius:5px;padding:4px 10px;color:#1d2327;text-decoration:none;font:inherit;cursor:pointer;margin:2px 2px 2px 0}
button.primary{background:#1f5fa8;border-color:#1f5fa8;color:#fff;font-weight:600}button.danger{color:#a02b1f;border-color:#d9a39b}
a.go{font-size:12px;font-weight:normal;margin-left:8px;white-space:nowrap}
:focus-visible{outline:3px solid #f0a400;outline-offset:1px}
th button.sort{background:none;border:0;padding:0;margin:0;font:inherit;font-weight:600;cursor:pointer;color:inherit}
th[aria-sort=ascending] button.sort::after{content:" ▲"}th[aria-sort=descending] button.sort::after{content:" ▼"}
caption{text-align:left;font-weight:600;padding:4px 0}
.changed{background:#fff3b0;transition:background .3s}
.charts{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0;background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:8px}
figcaption{color:#5f6b7a;font-size:12px;max-width:580px}figure ul{font-size:12px;max-width:560px}.curve{display:flex;gap:16px;align-items:flex-start;flex-wrap:wrap}
.queues{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:4px 14px;margin:14px 0}
.warning{background:#fdecea;border:1px solid #e6a39a;border-radius:6px;padding:10px 14px;max-width:900px}
.ok{background:#e9f7ef;border:1px solid #9fd5b3;border-radius:6px;padding:8px 14px;max-width:900px}
.crumbs{margin:0;color:#5f6b7a}
.review{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:18px;align-items:start}
article.message{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:12px 16px}
article.message h2{margin:0 0 6px;font-size:18px}.meta{color:#5f6b7a;font-size:13px;margin:0 0 8px}
.body{white-space:pre-wrap;overflow-wrap:anywhere;max-width:80ch;font-size:15px;line-height:1.5}
details.quoted{color:#5f6b7a;border-left:3px solid #dde1e6;padding-left:10px;margin:6px 0}
dl.metadata{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:8px 0;font-size:13px}dl.metadata dt{color:#5f6b7a}dl.metadata dd{margin:0}
.panel{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:10px 14px;margin-bottom:12px}
.panel h2{margin:0 0 6px}.bar{display:inline-block;height:8px;background:#56B4E9;vertical-align:middle;margin-right:6px}
.taxonomy{columns:2 170px;margin:6px 0;padding-left:0;list-style:none}.taxonomy ul{list-style:none;padding-left:18px}
.taxonomy li{break-inside:avoid;font-size:13px}.taxonomy label{cursor:pointer;display:flex;gap:4px;align-items:baseline;overflow-wrap:anywhere}.taxonomy .predicted{font-weight:600;color:#1f5fa8}
.pinned-tag{display:inline-block;background:#e8eef7;border:1px solid #b9c8de;border-radius:10px;padding:0 8px;margin:2px;font-size:12px}
kbd{border:1px solid #c2c9d1;border-bottom-width:2px;border-radius:3px;padding:0 4px;font-size:12px;background:#fafbfc}
fieldset{border:1px solid #dde1e6;border-radius:6px;margin:8px 0}legend{font-weight:600}
.login{max-width:420px;background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:14px 18px}.login label{display:block;margin:8px 0}
.login input{width:100%;box-sizing:border-box;padding:5px}
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


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = (), *,
           sortable: bool = False, caption: str = "") -> str:
    """An HTML table; ``rows`` hold HTML already escaped, ``numeric`` columns right-aligned;
    ``sortable`` ones sort by any column in the browser (`STATIC_SCRIPT`)."""
    head = "".join(f'<th scope=col{" class=n" if i in numeric else ""}>{escape(h)}</th>' for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f'<td{" class=n" if i in numeric else ""}>{cell}</td>' for i, cell in enumerate(row))
                   + "</tr>" for row in rows)
    cls = ' class="sortable"' if sortable else ""
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    return f"<table{cls}>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def review_href(dataset: str, kind: str, label: str | None = None, message_id: str | None = None,
                query: str | None = None) -> str:
    """The review queue of a training mode (escaped for an attribute).

    >>> review_href("a b", "check_label", "Card > Lost")
    '/datasets/a%20b/review?kind=check_label&amp;label=Card%20%3E%20Lost'
    """
    params = [("kind", kind)] + [(k, v) for k, v in (("label", label), ("q", query), ("id", message_id)) if v]
    return _dataset_href(dataset, "/review?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in params))


def label_href(dataset: str, label: str) -> str:
    """The label page (escaped for an attribute)."""
    return _dataset_href(dataset, "/label?name=" + quote(label, safe=""))


def _live(key: str, html: str) -> str:
    """A value the page updates in place (the live JSON's ``values[key]``)."""
    return f'<span data-live="{escape(key)}">{html}</span>'


def layout(title: str, body: str, *, refresh: bool = True, live_url: str | None = None, live_version: int = 0,
           reviewer: str | None = None, csrf: str | None = None) -> str:
    """A whole page: the header (with the reviewer signed in, and a sign-out form), ``body``, and
    the worker's own script (`STATIC_SCRIPT`). With ``live_url`` the script polls that JSON and
    updates the page's ``data-live`` values and charts in place; without the script (or with
    ``refresh`` and no ``live_url``), ``<meta http-equiv=refresh>`` reloads it every
    `REFRESH_SECONDS`. When the live JSON's ``version`` is above ``live_version`` (a dataset or
    a label appeared), the page reloads to show the new rows."""
    if live_url:
        meta = f'<noscript><meta http-equiv="refresh" content="{REFRESH_SECONDS}"></noscript>'
        note = '<span id="live-status">live: updates without a reload</span>. '
    elif refresh:
        meta = f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
        note = "This page reloads every %d s. " % REFRESH_SECONDS
    else:
        meta, note = "", ""
    live = f' data-live-url="{escape(live_url)}" data-live-version="{int(live_version)}"' if live_url else ""
    if reviewer:
        who = (f'<span class="who">reviewer <b>{escape(reviewer)}</b></span><form method="post" action="/logout" '
               f'class="inline"><input type="hidden" name="csrf" value="{escape(csrf or "")}">'
               f'<button type="submit" class="link">sign out</button></form>')
    else:
        who = '<a href="/login">sign in to review</a>'
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">{meta}'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)} · Refinery</title><style>{_CSS}</style>"
            f'<script src="{STATIC_SCRIPT}" defer></script></head><body{live}>'
            f'<header><a class="brand" href="/">Refinery</a><nav aria-label="site"><a href="/">datasets</a>'
            f'<a href="/datasets">/datasets (JSON)</a><a href="/metrics">/metrics</a><a href="/readyz">/readyz</a></nav>'
            f'<span class="spacer"></span>{who}</header>'
            f"<main>{body}</main>"
            f"<footer>{note}Rendered {escape(_when(time.time()))}.</footer></body></html>")


def _page(title: str, body: str, refresh: bool = True) -> str:
    return layout(title, body, refresh=refresh)


def _card(key: str, value: str, sub: str = "") -> str:
    return f'<div class="card"><div class="k">{escape(key)}</div><div class="v">{value}</div><div class="s">{sub}</div></div>'


# -- pages ----------------------------------------------------------------------------------------


def index_live_values(rows: Sequence[IndexRow]) -> dict[str, str]:
    """The values of the index that update in place."""
    values = {}
    for dataset, _, snapshot in rows:
        if snapshot is not None:
            values.update({f"rating:{dataset}": f"{snapshot.rating.score:.1f}", f"reviewed:{dataset}": str(snapshot.reviewed),
                           f"coverage:{dataset}": _percent(snapshot.coverage), f"map:{dataset}": _num(snapshot.map)})
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
        parts.append('<p class="note">This worker is still restoring its partitions from their snapshots; '
                     "datasets appear as they are restored.</p>")
    if not rows:
        parts.append('<div class="note">This worker owns no datasets yet. Send messages to the <code>messages</code> '
                     "topic keyed by their dataset (or run <code>refinery demo</code>); each dataset appears here "
                     "once its first message is processed. With several workers, each owns the datasets of its "
                     "partitions: look on the others too.</div>")
        return layout("Datasets", "".join(parts), **chrome)
    table_rows = []
    for dataset, partition, snapshot in rows:
        link = f'<a href="{_dataset_href(dataset)}">{escape(dataset)}</a>'
        api = f'<a href="{_dataset_href(dataset, "/metrics")}">metrics</a>'
        if snapshot is None:
            table_rows.append([link, str(partition), '<span class="muted">no metrics yet</span>', "", "", "", "", "", api])
            continue
        r = snapshot.rating
        table_rows.append([link, str(partition), _live(f"rating:{dataset}", f"{r.score:.1f}"), _band(r.band),
                           _ready(r.ready), _live(f"reviewed:{dataset}", str(snapshot.reviewed)),
                           _live(f"coverage:{dataset}", _percent(snapshot.coverage)),
                           _live(f"map:{dataset}", _num(snapshot.map)), api])
    parts.append(_table(["dataset", "partition", "rating", "band", "ready", "reviewed", "coverage", "MAP", "JSON"],
                        table_rows, numeric=(1, 2, 5, 6, 7), sortable=True))
    parts.append('<p class="muted">Ratings are those last published (every few seconds, when a dataset changed). '
                 "Open a dataset to review its messages.</p>")
    return layout("Datasets", "".join(parts), **chrome)


def _factor_metrics(metrics: dict[str, float | None]) -> str:
    return ", ".join(f"{escape(k)} {_num(v)}" for k, v in metrics.items()) or '<span class="muted">–</span>'


def _worst_first(labels: dict[str, LabelMetrics]) -> list[tuple[str, LabelMetrics]]:
    """Labels by average precision, worst first; labels without one (too few positives) last."""
    return sorted(labels.items(), key=lambda item: (item[1].average_precision is None, item[1].average_precision or 0.0,
                                                   item[0]))


def _warnings(m: LabelMetrics, dataset: str | None = None, label: str | None = None) -> str:
    """A label's warnings; with ``dataset`` and ``label``, each action that is a suggestion kind
    links to its review queue."""
    if not m.warnings:
        return ""

    def action(w) -> str:
        if dataset is not None and w.action in SUGGESTION_KINDS:
            return (f'<a data-kind="{escape(w.action)}" href="{review_href(dataset, w.action, label)}">'
                    f"{escape(w.action)}</a>")
        return escape(w.action)

    items = "".join(f'<li><span class="{escape(w.severity)}">{escape(w.severity)}</span> {escape(w.message)}'
                    f"<br><span class=muted>→ {action(w)}</span></li>" for w in m.warnings)
    return f"<ul>{items}</ul>"


def _suggestions_section(dataset: str, lists: Sequence[SuggestionList]) -> str:
    by_kind: dict[str, list[Suggestion]] = {}
    for suggestion_list in lists:
        by_kind.setdefault(suggestion_list.kind, []).extend(suggestion_list.items)
    parts = [f"<h2>What to review next (top {SUGGESTIONS_SHOWN} of each kind)</h2>"]
    for kind in SUGGESTION_KINDS:
        items = by_kind.get(kind, [])[:SUGGESTIONS_SHOWN]  # the engine's order: best first
        parts.append(f"<h3>{escape(_KIND_TITLES.get(kind, kind))} <span class=muted>({escape(kind)})</span> "
                     f'<a class="go" href="{review_href(dataset, kind)}">review this queue</a></h3>')
        if not items:
            parts.append('<p class="muted">No suggestions of this kind yet.</p>')
            continue
        parts.append(_table(["message id", "label", "score", "reason"],
                            [[f'<a href="{review_href(dataset, kind, s.label, s.message_id)}">{escape(s.message_id)}</a>',
                              escape(s.label or "–"), _num(s.score), escape(s.reason)] for s in items],
                            numeric=(2,)))
    return "".join(parts)


def action_link(dataset: str, kind: str, label: str | None) -> str:
    """Where a recommended action is carried out: its review queue, or the search page."""
    if kind == "search":
        return _dataset_href(dataset, "/search" + (f"?label={quote(label, safe='')}" if label else ""))
    if kind in SUGGESTION_KINDS:
        return review_href(dataset, kind, label)
    return _dataset_href(dataset)


def _actions_table(dataset: str, rows: Sequence) -> str:
    return _table(["action", "label", "why", "expected gain", ""],
                  [[escape(a.kind), escape(a.label or "–"), escape(a.why), _num(a.expected_gain, 1),
                    f'<a class="go" data-kind="{escape(a.kind)}" href="{action_link(dataset, a.kind, a.label)}">'
                    f'{"search" if a.kind == "search" else "open queue"}</a>'] for a in rows], numeric=(3,))


def _queues_menu(dataset: str, labels: Sequence[str]) -> str:
    """Every training mode, with a label picker for the kinds that take one."""
    plain = " ".join(f'<a class="button" href="{review_href(dataset, k)}">{escape(_KIND_LABELS[k])}</a>'
                     for k in ("shuffle", "low_confidence", "rebalance", "teach_label", "check_label", "missed_label"))
    options = "".join(f'<option value="{escape(label)}">{escape(label)}</option>' for label in sorted(labels))
    by_label = (f'<form method="get" action="{_dataset_href(dataset, "/review")}" class="inline">'
                f'<label>kind <select name="kind">'
                + "".join(f'<option value="{k}">{escape(_KIND_LABELS[k])}</option>' for k in ("teach_label", "check_label", "missed_label"))
                + f'</select></label> <label>label <select name="label">{options}</select></label> '
                  f'<button type="submit">open</button></form>') if labels else ""
    search = (f'<form method="get" action="{_dataset_href(dataset, "/search")}" class="inline" role="search">'
              f'<label>search messages <input type="search" name="q" size="24"></label> <button type="submit">search</button></form>')
    return f'<section class="queues" aria-label="review queues"><h2>Review</h2><p>{plain}</p><p>{by_label}</p><p>{search}</p></section>'


def dataset_live_values(snapshot: MetricsSnapshot) -> dict[str, str]:
    """The values of the dataset page that update in place (keys of its ``data-live`` elements)."""
    s, r = snapshot, snapshot.rating
    values = {"rating": f"{r.score:.1f}", "band": r.band, "map": _num(s.map), "coverage": _percent(s.coverage),
              "balance": _num(s.balance.score, 1), "reviewed": str(s.reviewed), "model_version": str(s.model_version),
              "labels": str(len(s.labels))}
    for label, m in s.labels.items():
        values[f"pinned:{label}"] = str(m.pinned)
        values[f"ap:{label}"] = _num(m.average_precision)
        values[f"support:{label}"] = str(m.support)
    return values


def render_dataset(snapshot: MetricsSnapshot, suggestions: Sequence[SuggestionList], *,
                   charts: dict[str, str] | None = None, **chrome) -> str:
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
    parts.append('<div class="cards">'
                 + _card("rating", _live("rating", f"{r.score:.1f}"), f"{escape(r.band)}, {_ready(r.ready)}")
                 + _card("MAP", _live("map", _num(s.map)), "mean average precision" if s.map is not None
                         else "too few reviews per label yet")
                 + _card("coverage", _live("coverage", _percent(s.coverage)), "live messages with an informative label")
                 + _card("balance", _live("balance", _num(balance.score, 1)),
                         f"similarity {_num(balance.similarity)}, shuffle share {_percent(balance.shuffle_share)}")
                 + _card("reviewed", _live("reviewed", str(s.reviewed)),
                         f"model version {_live('model_version', str(s.model_version))}")
                 + _card("labels", _live("labels", str(len(s.labels))), f"as of {escape(_when(s.timestamp))}")
                 + "</div>")
    if s.reviewed == 0:
        parts.append('<div class="note"><b>No reviews yet.</b> The model learns only from reviews: until people '
                     "label some messages (annotations on the <code>annotations</code> topic), it predicts no label, "
                     "the rating stays Poor and the per-label table is empty. Start with the "
                     f'<a href="{review_href(s.dataset, "shuffle")}"><i>shuffle</i></a> queue: an unbiased sample '
                     "of the stream.</div>")
    parts.append(_queues_menu(s.dataset, list(s.labels)))

    parts.append("<h2>Recommended actions</h2>")
    if s.actions:
        parts.append(_actions_table(s.dataset, s.actions[:ACTIONS_SHOWN]))
        if len(s.actions) > ACTIONS_SHOWN:
            parts.append(f"<details><summary>{len(s.actions) - ACTIONS_SHOWN} more actions</summary>"
                         f"{_actions_table(s.dataset, s.actions[ACTIONS_SHOWN:])}</details>")
    else:
        parts.append('<p class="muted">None: nothing stands out.</p>')

    parts.append("<h2>Rating factors</h2>")
    parts.append(_table(["factor", "score", "band", "metrics"],
                        [[escape(k), f"{f.score:.1f}", _band(f.band), _factor_metrics(f.metrics)] for k, f in r.factors.items()],
                        numeric=(1,), sortable=True))
    if charts:
        drift = ("<ul>" + "".join(f'<li><span class="amber">drift</span> {escape(_when(d.when))} '
                                  f'{escape(d.label or "label mix")}: {escape(d.detail)}</li>' for d in s.drift[-5:])
                 + "</ul>") if s.drift else '<p class="muted">No drift detected.</p>'
        parts.append('<h2>Over time and live</h2><div class="charts">'
                     + "".join(f'<figure><div id="{escape(key)}">{svg}</div><figcaption>{escape(_CHART_TITLES.get(key, key))}'
                               f"</figcaption>{drift if key == 'chart-mix' else ''}</figure>" for key, svg in charts.items())
                     + "</div>")

    parts.append("<h2>Labels, worst average precision first</h2>")
    if s.labels:
        rows = [[f'<a href="{label_href(s.dataset, label)}">{escape(label)}</a>', _num(m.precision), _num(m.recall),
                 _num(m.f1), _live(f"ap:{label}", _num(m.average_precision)), _num(m.threshold),
                 _live(f"support:{label}", str(m.support)), _live(f"pinned:{label}", str(m.pinned)), _warnings(m, s.dataset, label)]
                for label, m in _worst_first(s.labels)]
        parts.append(_table(["label", "precision", "recall", "F1", "AP", "threshold", "support", "pinned", "warnings"],
                            rows, numeric=(1, 2, 3, 4, 5, 6, 7), sortable=True))
        parts.append('<p class="muted">Over the validation window of recent reviews; – means too few reviews to say. '
                     "Click a column to sort by it.</p>")
    else:
        parts.append('<p class="muted">No labels yet: a label appears with its first review.</p>')

    parts.append("<h2>Drift events</h2>")
    if s.drift:
        parts.append(_table(["when", "label", "kind", "detail"],
                            [[escape(_when(d.when)), escape(d.label or "–"), escape(d.kind), escape(d.detail)]
                             for d in s.drift], sortable=True))
    else:
        parts.append('<p class="muted">None detected.</p>')

    parts.append(_suggestions_section(s.dataset, suggestions))
    kinds = " · ".join(f'<a href="{_dataset_href(s.dataset, "/suggestions?kind=" + k)}">{escape(k)}</a>'
                       for k in SUGGESTION_KINDS)
    parts.append(f'<h2>Machine-readable</h2><p><a href="{_dataset_href(s.dataset, "/metrics")}">metrics (JSON)</a> · '
                 f"suggestions (JSON): {kinds} · <a href=\"/metrics\">Prometheus /metrics</a></p>")
    chrome.setdefault("live_url", _live_url(s.dataset))
    chrome.setdefault("live_version", dataset_version(s))
    return layout(s.dataset, "".join(parts), **chrome)


def _live_url(dataset: str) -> str:
    return f"/datasets/{quote(dataset, safe='')}/live"


def render_label(dataset: str, label: str, m: LabelMetrics, curve_svg: str,
                 queues: dict[str, Sequence[Suggestion]], **chrome) -> str:
    """One label's page: its metrics, warnings, precision-recall curve (``curve_svg``, from
    `agents.web.charts.pr_curve`) and the queues that concern it (``queues``: kind -> first items).

    >>> from schemas import LabelMetrics
    >>> m = LabelMetrics(precision=0.9, recall=0.5, f1=0.64, average_precision=0.7, threshold=0.4, support=9, pinned=30)
    >>> page = render_label("d", "Card > Lost", m, "<svg></svg>", {"check_label": []})
    >>> "Card &gt; Lost" in page and "/datasets/d/review?kind=check_label&amp;label=Card%20%3E%20Lost" in page
    True
    """
    name = escape(label)
    parts = [f'<p class="crumbs"><a href="{_dataset_href(dataset)}">{escape(dataset)}</a> › label</p><h1>{name}</h1>',
             '<div class="cards">'
             + _card("average precision", _live(f"ap:{label}", _num(m.average_precision)), "area under the curve")
             + _card("precision", _num(m.precision), f"at threshold {_num(m.threshold)}")
             + _card("recall", _num(m.recall), f"F1 {_num(m.f1)}")
             + _card("support", _live(f"support:{label}", str(m.support)), "positives in the window")
             + _card("pinned", _live(f"pinned:{label}", str(m.pinned)), "reviewed examples, all time")
             + "</div>"]
    parts.append("<h2>Warnings</h2>" + (_warnings(m, dataset, label) or '<p class="muted">None.</p>'))
    t = m.thresholds
    parts.append('<h2>Precision-recall curve</h2><div class="curve">'
                 f'<figure><div id="chart-curve">{curve_svg}</div><figcaption>Out-of-sample scores of the validation '
                 "window; the three thresholds marked.</figcaption></figure>"
                 + _table(["threshold", "value"], [["balanced (max F1)", _num(t.balanced)],
                                                   ["high precision", _num(t.high_precision)],
                                                   ["high recall", _num(t.high_recall)],
                                                   ["<b>in force</b>", f"<b>{_num(m.threshold)}</b>"]], numeric=(1,))
                 + "</div>")
    parts.append("<h2>Queues for this label</h2>")
    for kind, items in queues.items():
        parts.append(f'<h3>{escape(_KIND_TITLES.get(kind, kind))} <a class="go" data-kind="{escape(kind)}" '
                     f'href="{review_href(dataset, kind, label)}">open queue</a></h3>')
        if items:
            parts.append(_table(["message id", "score", "reason"],
                                [[f'<a href="{review_href(dataset, kind, label, s.message_id)}">{escape(s.message_id)}</a>',
                                  _num(s.score), escape(s.reason)] for s in items], numeric=(1,), sortable=True))
        else:
            parts.append('<p class="muted">Nothing in this queue now.</p>')
    parts.append(f'<p><a class="button" href="{action_link(dataset, "search", label)}">Search for more examples</a></p>')
    chrome.setdefault("live_url", _live_url(dataset))
    return layout(f"{label} · {dataset}", "".join(parts), **chrome)


def render_missing(dataset: str, owned: Sequence[str]) -> str:
    """The 404 page: this worker does not own ``dataset``.

    >>> "not owned by this worker" in render_missing("x", ["a"])
    True
    """
    links = ", ".join(f'<a href="{_dataset_href(d)}">{escape(d)}</a>' for d in owned) or "none"
    return _page("Not here", f"<h1>{escape(dataset)}</h1><p class=note>Dataset <b>{escape(dataset)}</b> is not owned "
                             f"by this worker (owned here: {links}). With several workers, open the one that owns "
                             f"the dataset's partition. If its stream has just started, the dataset appears once "
                             f"its first message is processed: this page reloads by itself.</p>")


def render_unauthorised() -> str:
    """The 401 page: the worker has ``REFINERY_API_TOKEN`` set and the request did not carry it."""
    return _page("Token required", "<h1>A bearer token is required</h1><p class=note>This worker has "
                 "<code>REFINERY_API_TOKEN</code> set: every page and API route but <code>/healthz</code> needs the "
                 "header <code>Authorization: Bearer &lt;token&gt;</code>, or a signed-in session: in a browser, "
                 '<a href="/login">sign in</a> with your name and the token (docs/workbench.md).</p>', refresh=False)


# -- gathering -----------------------------------------------------------------------------------


class Pages:
    """The pages' answers, ``(status, html)``, given the worker's `agents.worker.app.Service`."""

    def __init__(self, service) -> None:
        self.service = service

    def _owned(self) -> list[str]:
        return sorted(name for part in self.service.partitions.values() for name in part.engines)

    def index(self, **chrome) -> tuple[int, str]:
        rows = [(name, p, self.service.latest_metrics.get(name))
                for p, part in sorted(self.service.partitions.items()) for name in sorted(part.engines)]
        return 200, render_index(rows, ready=self.service.ready, **chrome)

    async def dataset(self, dataset: str, *, charts=None, **chrome) -> tuple[int, str]:
        """The dataset page; ``charts(dataset, mix)`` adds the charts (`agents.web.workbench`)."""
        part = self.service.owner_of(dataset)
        if part is None:
            return 404, render_missing(dataset, self._owned())
        engine = part.engines[dataset]

        def gather():
            now = time.time()
            snapshot = engine.metrics(now=now)
            lists = []
            if hasattr(engine, "suggestions"):
                lists = [SuggestionList(dataset=dataset, timestamp=now, model_version=snapshot.model_version, kind=kind,
                                        label=None, items=tuple(engine.suggestions(kind, limit=SUGGESTIONS_SHOWN)))
                         for kind in SUGGESTION_KINDS]
            mix = None
            if charts is not None:
                from agents.web.service_view import label_mix

                mix = label_mix(engine)
            return snapshot, lists, mix

        async with self.service.lock:
            snapshot, lists, mix = await self.service.in_thread(gather)
        drawn = charts(dataset, mix) if charts is not None else None
        return 200, render_dataset(snapshot, lists, charts=drawn, **chrome)
