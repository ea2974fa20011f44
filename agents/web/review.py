"""The review workbench's pages: sign-in, one message to review, an empty queue, search.

Plain functions from plain data to HTML (tested without Kafka); every string that comes from
data is escaped. `agents.web.workbench` gathers the data and serves them.

>>> html = render_review(ReviewView(dataset="d", kind="shuffle", label=None, query=None,
...     message=Message(dataset="d", id="m-1", timestamp=0, subject="<b>Hi</b>", body="Where is my card?"),
...     confidences={"Card": 0.9}, predicted=("Card",), pinned=(), taxonomy=("Card",)), csrf="t", reviewer="ann")
>>> "&lt;b&gt;Hi&lt;/b&gt;" in html and 'name="csrf" value="t"' in html and 'data-predicted' in html
True
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Mapping, Sequence
from html import escape

from agents.web.layout import KIND_LABELS as _KIND_LABELS
from agents.web.layout import dataset_href as _dataset_href
from agents.web.layout import layout, review_href
from schemas import Message, label_ancestors

__all__ = [
    "ReviewView",
    "SearchHit",
    "body_html",
    "render_login",
    "render_review",
    "render_queue_empty",
    "render_search",
    "render_error",
    "taxonomy_tree",
]

#: A line that starts the quoted earlier message of a reply (everything after it is quoted).
_REPLY_HEADER = re.compile(r"^\s*(On .{4,200} wrote:|-{2,}\s*Original Message\s*-{2,}|From: .+|_{20,})\s*$", re.I)


@dataclasses.dataclass(frozen=True)
class ReviewView:
    """What the review page shows of one message."""

    dataset: str
    kind: str
    label: str | None
    query: str | None
    message: Message
    confidences: Mapping[str, float]
    predicted: tuple[str, ...]
    pinned: tuple[str, ...]  # the labels of its current review (empty if unreviewed)
    taxonomy: tuple[str, ...]
    reviewed: bool = False
    reason: str = ""  # why the engine suggests it
    other_reviewer: str | None = None  # someone else has it open
    remaining: int = 0
    sent: str | None = None  # the id of the review just sent, to confirm it
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class SearchHit:
    message: Message
    pinned: tuple[str, ...]
    reviewed: bool


def body_html(body: str) -> str:
    """A message body for reading: line breaks kept, quoted parts (``>`` lines, and a reply's
    earlier message) folded into ``<details>``.

    >>> print(body_html("Thanks!\\n> old text\\n> more"))
    <div class="body">Thanks!</div><details class="quoted"><summary>quoted text (2 lines)</summary><div class="body">&gt; old text
    &gt; more</div></details>
    """
    lines = body.splitlines()
    blocks: list[tuple[bool, list[str]]] = []
    rest_quoted = False
    for line in lines:
        if not rest_quoted and _REPLY_HEADER.match(line):
            rest_quoted = True
        quoted = rest_quoted or line.lstrip().startswith(">")
        if blocks and blocks[-1][0] == quoted:
            blocks[-1][1].append(line)
        else:
            blocks.append((quoted, [line]))
    out = []
    for quoted, block in blocks:
        text = escape("\n".join(block).strip("\n"))
        if not text.strip():
            continue
        if quoted:
            out.append(
                f'<details class="quoted"><summary>quoted text ({len(block)} line{"s" if len(block) != 1 else ""})'
                f'</summary><div class="body">{text}</div></details>'
            )
        else:
            out.append(f'<div class="body">{text}</div>')
    return "".join(out) or '<p class="muted">(empty body)</p>'


def taxonomy_tree(
    labels: Sequence[str], checked: Sequence[str], predicted: Sequence[str], focus: str | None = None
) -> str:
    """Checkboxes for every label, nested by ``Parent > Child``; ``checked`` ticked, ``predicted``
    marked (the "accept predictions" shortcut ticks exactly those), the queue's label (``focus``)
    named as such."""
    tree: dict = {}
    for label in sorted(set(labels) | set(checked)):
        node = tree
        for level in label_ancestors(label):
            node = node.setdefault(level, {})
    checked_set, predicted_set = set(checked), set(predicted)

    def render(node: dict) -> str:
        items = []
        for name, children in node.items():
            leaf = name.split(" > ")[-1]
            attrs = (" checked" if name in checked_set else "") + (" data-predicted" if name in predicted_set else "")
            cls = ' class="predicted"' if name in predicted_set else ""
            mark = ' <span class="focus">this queue\'s label</span>' if name == focus else ""
            items.append(
                f'<li data-label="{escape(name)}"><label{cls}><input type="checkbox" name="labels" '
                f'value="{escape(name)}"{attrs}> {escape(leaf)}{mark}</label>'
                + (f"<ul>{render(children)}</ul>" if children else "")
                + "</li>"
            )
        return "".join(items)

    return (
        f'<ul class="taxonomy">{render(tree)}</ul>'
        if tree
        else '<p class="muted">No labels yet: type the first below.</p>'
    )


def _queue_title(kind: str, label: str | None, query: str | None) -> str:
    title = _KIND_LABELS.get(kind, kind)
    if label:
        title += f": {label}"
    if query:
        title += f" “{query}”"
    return title


def _hidden(**fields: str | None) -> str:
    return "".join(f'<input type="hidden" name="{k}" value="{escape(v)}">' for k, v in fields.items() if v)


def render_review(v: ReviewView, *, csrf: str, reviewer: str) -> str:
    """One message of a queue, with its predictions, the taxonomy and the review form."""
    m = v.message
    title = _queue_title(v.kind, v.label, v.query)
    parts = [
        f'<p class="crumbs"><a href="{_dataset_href(v.dataset)}">{escape(v.dataset)}</a> › review</p>'
        f"<h1>{escape(title)} <span class=muted>· {v.remaining} more in this queue</span></h1>"
    ]
    if v.sent:
        parts.append(f'<p class="ok" role="status">Review of <b>{escape(v.sent)}</b> sent to Kafka.</p>')
    if v.error:
        parts.append(f'<p class="warning" role="alert">{escape(v.error)}</p>')
    if v.other_reviewer:
        parts.append(
            f'<p class="warning" role="alert" id="lease-warning"><b>{escape(v.other_reviewer)}</b> has this '
            "message open too. If you both submit, the later review replaces the earlier one; "
            "skip it (<kbd>n</kbd>) to take another.</p>"
        )
    meta = [
        f"channel <b>{escape(m.channel)}</b>",
        escape(time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(m.timestamp))),
    ]
    for name, value in (
        ("from", m.sender),
        ("to", m.to),
        ("cc", m.cc),
        ("thread", m.thread_id),
        ("language", m.language),
    ):
        if value:
            meta.append(f"{name} {escape(value)}")
    metadata = "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(val))}</dd>" for k, val in sorted(m.metadata.items()))
    parts.append(
        '<div class="review"><article class="message" aria-label="message">'
        f"<h2>{escape(m.subject) if m.subject else '<span class=muted>(no subject)</span>'}</h2>"
        f'<p class="meta">id <code>{escape(m.id)}</code> · {" · ".join(meta)}</p>'
        + (f'<dl class="metadata">{metadata}</dl>' if metadata else "")
        + body_html(m.body)
        + (f'<p class="muted"><small>Why this message: {escape(v.reason)}</small></p>' if v.reason else "")
        + "</article>"
    )

    top = sorted(v.confidences.items(), key=lambda item: (-item[1], item[0]))[:8]
    predictions = "".join(
        f"<tr><td>{'<b>' if name in v.predicted else ''}{escape(name)}{'</b>' if name in v.predicted else ''}</td>"
        f'<td class=n><span class="bar" style="width:{int(60 * c)}px"></span>{c:.2f}</td></tr>'
        for name, c in top
    )
    pinned = (
        "".join(f'<span class="pinned-tag">{escape(p)}</span>' for p in v.pinned)
        if v.pinned
        else (
            '<span class="muted">reviewed: none apply</span>'
            if v.reviewed
            else '<span class="muted">not reviewed yet</span>'
        )
    )
    form = (
        f'<form id="review-form" method="post" action="{_dataset_href(v.dataset, "/review")}">'
        + _hidden(csrf=csrf, message_id=m.id, kind=v.kind, label=v.label, q=v.query)
        + "<fieldset><legend>Labels</legend>"
        + '<label>filter <input type="text" id="label-filter" size="18" aria-describedby="keys"></label> '
        + '<button type="button" id="accept" title="tick the predicted labels (a)">accept predictions</button>'
        + taxonomy_tree(v.taxonomy, v.pinned, v.predicted, v.label)
        + '<label>new labels <input type="text" name="new_labels" size="30" placeholder="Parent &gt; Child, Other"></label>'
        + "</fieldset>"
        + '<button type="submit" name="action" value="review" class="primary">submit review</button> '
        + '<button type="submit" name="action" value="skip">skip</button> '
        + ('<button type="submit" name="action" value="remove" class="danger">un-review</button>' if v.reviewed else "")
        + "</form>"
        + '<p class="muted" id="keys">Keys: <kbd>a</kbd> accept predictions · <kbd>s</kbd> or <kbd>Ctrl</kbd>+<kbd>Enter</kbd> '
        "submit · <kbd>n</kbd> next (skip) · <kbd>/</kbd> filter labels. Submitting with no label ticked means "
        f"“reviewed, none apply”. Signed in as <b>{escape(reviewer)}</b>.</p>"
    )
    parts.append(
        '<div><section class="panel" aria-label="predictions"><h2>Predictions</h2>'
        + (
            f"<table><thead><tr><th scope=col>label</th><th scope=col class=n>confidence</th></tr></thead>"
            f"<tbody>{predictions}</tbody></table>"
            if top
            else '<p class="muted">No labels yet.</p>'
        )
        + '<p class="muted">Bold: at or above the label\'s threshold.</p></section>'
        + f'<section class="panel" aria-label="pinned labels"><h2>Pinned now</h2>{pinned}</section>'
        + f'<section class="panel" aria-label="review">{form}</section></div></div>'
    )
    return layout(f"Review · {title}", "".join(parts), refresh=False, reviewer=reviewer, csrf=csrf)


def render_queue_empty(
    dataset: str,
    kind: str,
    label: str | None,
    query: str | None,
    *,
    reviewer: str,
    csrf: str,
    sent: str | None = None,
    missing_text: int = 0,
) -> str:
    title = _queue_title(kind, label, query)
    parts = [
        f'<p class="crumbs"><a href="{_dataset_href(dataset)}">{escape(dataset)}</a> › review</p>'
        f"<h1>{escape(title)}</h1>"
    ]
    if sent:
        parts.append(f'<p class="ok" role="status">Review of <b>{escape(sent)}</b> sent to Kafka.</p>')
    parts.append(
        '<p class="note">Nothing left in this queue for you now. New suggestions arrive as messages and '
        "reviews stream in; other queues may have work.</p>"
    )
    if missing_text:
        parts.append(
            f'<p class="muted">{missing_text} suggested message(s) are not shown: their text is older than '
            "what this worker keeps (REFINERY_WORKBENCH_MESSAGES).</p>"
        )
    parts.append(
        f'<p><a class="button" href="{_dataset_href(dataset)}">back to {escape(dataset)}</a> '
        f'<a class="button" href="{review_href(dataset, "shuffle")}">shuffle queue</a></p>'
    )
    return layout(f"Review · {title}", "".join(parts), refresh=False, reviewer=reviewer, csrf=csrf)


def render_search(
    dataset: str,
    query: str,
    label: str | None,
    hits: Sequence[SearchHit],
    *,
    reviewer: str | None,
    csrf: str | None,
    held: int = 0,
) -> str:
    """Search the dataset's recent messages; each hit opens in the review queue with mode ``search``."""
    parts = [
        f'<p class="crumbs"><a href="{_dataset_href(dataset)}">{escape(dataset)}</a> › search</p>'
        f"<h1>Training using search</h1>"
    ]
    if label:
        parts.append(
            f'<p class="note">Looking for examples of <b>{escape(label)}</b>: search for words its messages '
            "use, open a hit and pin the label where it applies.</p>"
        )
    parts.append(
        f'<form method="get" action="{_dataset_href(dataset, "/search")}" role="search">'
        f'<label>words or a "quoted phrase" <input type="search" name="q" value="{escape(query)}" size="40" autofocus></label>'
        + _hidden(label=label)
        + ' <button type="submit" class="primary">search</button></form>'
    )
    parts.append(
        f'<p class="muted">Searches the {held} most recent messages this worker holds, reviewed and not. '
        "Reviews made from here are sent with mode <code>search</code>.</p>"
    )
    if query:
        if hits:
            rows = "".join(
                f'<tr><td><a href="{review_href(dataset, "search", label, h.message.id, query)}">{escape(h.message.id)}</a></td>'
                f"<td>{escape(h.message.subject or h.message.body[:160])}</td>"
                f"<td>{escape(', '.join(h.pinned)) if h.pinned else ('none apply' if h.reviewed else '<span class=muted>unreviewed</span>')}</td></tr>"
                for h in hits
            )
            parts.append(
                f'<table class="sortable"><caption>{len(hits)} message(s)</caption><thead><tr><th scope=col>message</th>'
                f"<th scope=col>text</th><th scope=col>pinned</th></tr></thead><tbody>{rows}</tbody></table>"
                f'<p><a class="button primary" href="{review_href(dataset, "search", label, None, query)}">'
                "review these one by one</a></p>"
            )
        else:
            parts.append('<p class="muted">No message matches.</p>')
    return layout(f"Search · {dataset}", "".join(parts), refresh=False, reviewer=reviewer, csrf=csrf)


def render_login(*, needs_token: bool, next_url: str, error: str | None = None) -> str:
    """The sign-in form: a reviewer name, and the API token when the worker has one."""
    token = (
        (
            '<label>API token (REFINERY_API_TOKEN) <input type="password" name="token" required '
            'autocomplete="current-password"></label>'
        )
        if needs_token
        else ""
    )
    body = (
        "<h1>Sign in to review</h1>"
        + (f'<p class="warning" role="alert">{escape(error)}</p>' if error else "")
        + '<form method="post" action="/login" class="login">'
        + f'<input type="hidden" name="next" value="{escape(next_url)}">'
        + "<label>Your name (recorded as the reviewer of every review you send) "
        '<input type="text" name="reviewer" required maxlength="64" autocomplete="username" autofocus></label>'
        + token
        + '<button type="submit" class="primary">sign in</button></form>'
    )
    return layout("Sign in", body, refresh=False)


def render_error(title: str, message: str, *, reviewer: str | None = None, csrf: str | None = None) -> str:
    return layout(
        title,
        f'<h1>{escape(title)}</h1><p class="warning" role="alert">{escape(message)}</p>',
        refresh=False,
        reviewer=reviewer,
        csrf=csrf,
    )
