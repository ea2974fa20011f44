"""What every page shares: the layout (header, sign-in state, the worker's own script), the CSS,
and the small formatting helpers, each escaping what it is given.

>>> page = layout("a <b>", "<p>hi</p>", live_url="/live")
>>> "<title>a &lt;b&gt; · Refinery</title>" in page and 'data-live-url="/live"' in page
True
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from html import escape
from urllib.parse import quote

__all__ = [
    "REFRESH_SECONDS",
    "STATIC_SCRIPT",
    "KIND_TITLES",
    "KIND_LABELS",
    "CHART_TITLES",
    "CSS",
    "layout",
    "page",
    "card",
    "table",
    "num",
    "percent",
    "when",
    "dataset_href",
    "review_href",
    "label_href",
    "live",
    "band",
    "ready_badge",
]

REFRESH_SECONDS = 5
#: The worker's own script (sorting, live values, review shortcuts), served from the package.
STATIC_SCRIPT = "/static/workbench.js"
KIND_TITLES = {
    "check_label": "Check label: reviews where a label may be misapplied",
    "missed_label": "Missed label: reviews where a label may be missing",
    "teach_label": "Teach label: messages the model is least sure of for a weak label",
    "low_confidence": "Low confidence: messages no informative label covers",
    "rebalance": "Rebalance: messages least like the reviewed ones",
    "shuffle": "Shuffle: an unbiased random sample of the stream",
}

KIND_LABELS = {
    "check_label": "Check label",
    "missed_label": "Missed label",
    "teach_label": "Teach label",
    "low_confidence": "Low confidence",
    "rebalance": "Rebalance",
    "shuffle": "Shuffle",
    "search": "Search",
}
CHART_TITLES = {
    "chart-rating": "The rating and its four factors over time (0-100)",
    "chart-coverage": "Coverage (% of live messages) and balance (0-100) over time",
    "chart-mix": "Live label mix: share of recent live messages whose top prediction is each label",
}

CSS = """
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
.taxonomy li{break-inside:avoid;font-size:13px}.taxonomy label{cursor:pointer;display:flex;gap:4px;align-items:baseline;overflow-wrap:anywhere}.taxonomy .predicted{font-weight:600;color:#1f5fa8}.taxonomy .focus{font-size:11px;background:#fff3b0;border-radius:8px;padding:0 6px;white-space:nowrap}
.pinned-tag{display:inline-block;background:#e8eef7;border:1px solid #b9c8de;border-radius:10px;padding:0 8px;margin:2px;font-size:12px}
kbd{border:1px solid #c2c9d1;border-bottom-width:2px;border-radius:3px;padding:0 4px;font-size:12px;background:#fafbfc}
fieldset{border:1px solid #dde1e6;border-radius:6px;margin:8px 0}legend{font-weight:600}
.login{max-width:420px;background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:14px 18px}.login label{display:block;margin:8px 0}
.login input{width:100%;box-sizing:border-box;padding:5px}
summary{cursor:pointer;color:#2c5d9e;margin:2px 0 6px}.muted{color:#5f6b7a}ul{margin:4px 0 8px 0;padding-left:20px}footer{padding:8px 24px 24px;color:#5f6b7a;font-size:12px}
"""


# -- formatting ----------------------------------------------------------------------------------


def num(value: float | None, digits: int = 3) -> str:
    """A number for a table cell; an undefined value (too few reviews) is a dash.

    >>> num(0.12345), num(None), num(72.456, 1)
    ('0.123', '–', '72.5')
    """
    return "–" if value is None else f"{value:.{digits}f}"


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def when(timestamp: float) -> str:
    """An epoch time in UTC, to the second.

    >>> when(0)
    '1970-01-01 00:00:00 UTC'
    """
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


def dataset_href(dataset: str, suffix: str = "") -> str:
    return escape(f"/datasets/{quote(dataset, safe='')}{suffix}")


def band(band: str) -> str:
    return f'<span class="band {escape(band)}">{escape(band)}</span>'


def ready_badge(ready: bool) -> str:
    return '<span class="ready">ready</span>' if ready else '<span class="notready">not ready</span>'


def table(
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    numeric: Sequence[int] = (),
    *,
    sortable: bool = False,
    caption: str = "",
) -> str:
    """An HTML table; ``rows`` hold HTML already escaped, ``numeric`` columns right-aligned;
    ``sortable`` ones sort by any column in the browser (`STATIC_SCRIPT`)."""
    head = "".join(f"<th scope=col{' class=n' if i in numeric else ''}>{escape(h)}</th>" for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f"<td{' class=n' if i in numeric else ''}>{cell}</td>" for i, cell in enumerate(row)) + "</tr>"
        for row in rows
    )
    cls = ' class="sortable"' if sortable else ""
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    return f"<table{cls}>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def review_href(
    dataset: str, kind: str, label: str | None = None, message_id: str | None = None, query: str | None = None
) -> str:
    """The review queue of a training mode (escaped for an attribute).

    >>> review_href("a b", "check_label", "Card > Lost")
    '/datasets/a%20b/review?kind=check_label&amp;label=Card%20%3E%20Lost'
    """
    params = [("kind", kind)] + [(k, v) for k, v in (("label", label), ("q", query), ("id", message_id)) if v]
    return dataset_href(dataset, "/review?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in params))


def label_href(dataset: str, label: str) -> str:
    """The label page (escaped for an attribute)."""
    return dataset_href(dataset, "/label?name=" + quote(label, safe=""))


def live(key: str, html: str) -> str:
    """A value the page updates in place (the live JSON's ``values[key]``)."""
    return f'<span data-live="{escape(key)}">{html}</span>'


def layout(
    title: str,
    body: str,
    *,
    refresh: bool = True,
    live_url: str | None = None,
    live_version: int = 0,
    reviewer: str | None = None,
    csrf: str | None = None,
) -> str:
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
        note = f"This page reloads every {REFRESH_SECONDS} s. "
    else:
        meta, note = "", ""
    live = f' data-live-url="{escape(live_url)}" data-live-version="{int(live_version)}"' if live_url else ""
    if reviewer:
        who = (
            f'<span class="who">reviewer <b>{escape(reviewer)}</b></span><form method="post" action="/logout" '
            f'class="inline"><input type="hidden" name="csrf" value="{escape(csrf or "")}">'
            f'<button type="submit" class="link">sign out</button></form>'
        )
    else:
        who = '<a href="/login">sign in to review</a>'
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">{meta}'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} · Refinery</title><style>{CSS}</style>"
        f'<script src="{STATIC_SCRIPT}" defer></script></head><body{live}>'
        f'<header><a class="brand" href="/">Refinery</a><nav aria-label="site"><a href="/">datasets</a>'
        f'<a href="/datasets">/datasets (JSON)</a><a href="/metrics">/metrics</a><a href="/readyz">/readyz</a></nav>'
        f'<span class="spacer"></span>{who}</header>'
        f"<main>{body}</main>"
        f"<footer>{note}Rendered {escape(when(time.time()))}.</footer></body></html>"
    )


def page(title: str, body: str, refresh: bool = True) -> str:
    return layout(title, body, refresh=refresh)


def card(key: str, value: str, sub: str = "") -> str:
    return f'<div class="card"><div class="k">{escape(key)}</div><div class="v">{value}</div><div class="s">{sub}</div></div>'
