"""The review workbench: training modes in the browser, every review written to ``annotations``.

Served by the worker's web server (routes: `agents.web.routes`), beside the API (`agents.web.api`),
under the same access rule:

=============================================  =====================================================
``GET /login``, ``POST /login``, ``POST /logout``  sign in with a reviewer name (and ``REFINERY_API_TOKEN``
                                               when set): a signed, HttpOnly, SameSite=Strict cookie
``GET /datasets/{d}/review``                   ``?kind=K&label=L`` (a suggestion kind) or
                                               ``?kind=search&q=words``: the next message of the queue
                                               (``&id=M``: that message)
``POST /datasets/{d}/review``                  submit (``action=review``), skip or un-review
                                               (``action=remove``) the message; CSRF token required
``GET /datasets/{d}/search``                   ``?q=words``: the dataset's recent messages that match
``GET /datasets/{d}/label``                    ``?name=L``: the label page (metrics, curve, queues)
``GET /datasets/{d}/live``, ``GET /live``      JSON the pages poll to update in place
``GET /static/workbench.js``                   the pages' script, served from the package
=============================================  =====================================================

A submitted review is an ``Annotation`` (mode from the training mode: ``check``, ``missed``,
``teach``, ``low_confidence``, ``rebalance``, ``shuffle`` or ``search``; ``annotator`` the
signed-in reviewer; the message inline) produced to ``annotations`` keyed by the dataset, on
the dataset's partition. It reaches the engine like any other review, through the sequencer.

Everything the workbench holds is bounded by configuration (`WorkbenchOptions`): the recent
messages' text (`agents.web.messages`), the metrics history (`agents.web.history`), leases
and skips (`agents.web.queue`). Engine calls run in the worker's engine thread under its lock.
The worker is reached only through `agents.web.service_view.WorkerView`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Mapping
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

import orjson

from agents.settings import env_value
from agents.web import charts, pages
from agents.web.history import DEFAULT_POINTS, MetricsHistory
from agents.web.messages import DEFAULT_BYTES, DEFAULT_MESSAGES, MessageStore, backfill_events, search
from agents.web.queue import KIND_MODES, LEASE_SECONDS, ReviewQueues
from agents.web.review import (
    ReviewView,
    SearchHit,
    render_error,
    render_login,
    render_queue_empty,
    render_review,
    render_search,
)
from agents.web.service_view import WorkerView, pinned_labels
from agents.web.session import COOKIE, Session, Sessions, valid_reviewer
from agents.worker.observability import log_event
from schemas import Annotation, LabelAssignment, SchemaError, Suggestion

__all__ = ["WorkbenchOptions", "Workbench", "Reply", "json_reply", "parse_labels"]

log = logging.getLogger("refinery.workbench")

#: Items of a suggestion kind a queue draws from.
QUEUE_DEPTH = 100
SEARCH_LIMIT = 100
STATIC = {"workbench.js": "text/javascript"}


@dataclasses.dataclass(frozen=True)
class WorkbenchOptions:
    """Bounds of what the workbench keeps in memory (``REFINERY_WORKBENCH_*``, docs/workbench.md)."""

    #: REFINERY_WORKBENCH_MESSAGES / REFINERY_WORKBENCH_BYTES: recent messages' text kept.
    messages: int = DEFAULT_MESSAGES
    message_bytes: int = DEFAULT_BYTES
    #: REFINERY_WORKBENCH_HISTORY: metrics points kept per dataset for the charts.
    history: int = DEFAULT_POINTS
    #: REFINERY_WORKBENCH_LEASE_SECONDS: how long an opened message is kept from other reviewers.
    lease_seconds: float = LEASE_SECONDS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkbenchOptions:
        env = os.environ if env is None else env
        d = cls()
        return cls(
            messages=env_value(env, "REFINERY_WORKBENCH_MESSAGES", d.messages, int),
            message_bytes=env_value(env, "REFINERY_WORKBENCH_BYTES", d.message_bytes, int),
            history=env_value(env, "REFINERY_WORKBENCH_HISTORY", d.history, int),
            lease_seconds=env_value(env, "REFINERY_WORKBENCH_LEASE_SECONDS", d.lease_seconds, float),
        )


@dataclasses.dataclass
class Reply:
    """An HTTP answer: status, body, content type, extra headers."""

    status: int
    body: str | bytes
    content_type: str = "text/html"
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


def _redirect(location: str, **headers: str) -> Reply:
    return Reply(303, "", headers={"Location": location, **headers})


def _html(status: int, html: str) -> Reply:
    return Reply(status, html)


def json_reply(body: Any, status: int = 200) -> Reply:
    return Reply(status, orjson.dumps(body), "application/json")


def parse_labels(ticked: list[str], typed: str) -> tuple[LabelAssignment, ...]:
    """The labels of a review from the ticked boxes and the typed ones (comma-separated), most
    specific only (a parent ticked with its child is implied by the child anyway).

    >>> [a.name for a in parse_labels(["Card", "Card > Lost"], "Billing>Refund, Card > Lost")]
    ['Billing > Refund', 'Card > Lost']
    >>> parse_labels([], " , ")
    ()
    """
    names = []
    for i, raw in enumerate([*ticked, *typed.split(",")]):
        if not raw.strip():
            continue
        names.append(LabelAssignment.from_dict({"name": raw.strip()}, path=f"labels[{i}]").name)
    unique = set(names)
    implied = {a for name in unique for a in _ancestors(name)[:-1]}
    return tuple(LabelAssignment(name=n) for n in sorted(unique - implied))


def _ancestors(name: str) -> tuple[str, ...]:
    parts = name.split(" > ")
    return tuple(" > ".join(parts[: i + 1]) for i in range(len(parts)))


# -- the workbench -----------------------------------------------------------------------------


class Workbench:
    """The workbench's answers (`Reply`), given a `WorkerView`."""

    def __init__(self, worker: WorkerView, options: WorkbenchOptions | None = None) -> None:
        self.worker = worker
        self.options = options or WorkbenchOptions()
        self.sessions = Sessions(worker.settings.api_token)
        self.queues = ReviewQueues(self.options.lease_seconds)
        self.store = MessageStore(self.options.messages, self.options.message_bytes)
        worker.on_seen(self.store.apply)  # what the engine applies, decoded once; `run` backfills
        self.history = MetricsHistory(self.options.history)

    # -- access ------------------------------------------------------------------------------

    def session(self, request) -> Session | None:
        return self.sessions.read(request.cookies.get(COOKIE), now=time.time())

    def bearer_ok(self, request) -> bool:
        import hmac

        token = self.worker.settings.api_token
        if not token:
            return True
        header = request.headers.get("Authorization") or ""
        return hmac.compare_digest(header.encode("utf-8"), f"Bearer {token}".encode())

    def allowed(self, request) -> bool:
        """May this request read? A bearer token, a session, or no token configured."""
        return self.bearer_ok(request) or self.session(request) is not None

    def chrome(self, session: Session | None) -> dict[str, str]:
        """The page header's reviewer and sign-out form."""
        return {} if session is None else {"reviewer": session.reviewer, "csrf": self.sessions.csrf(session)}

    def login_redirect(self, request) -> Reply:
        return _redirect("/login?" + urlencode({"next": str(request.rel_url)}))

    @staticmethod
    def _same_origin(request) -> bool:
        """A browser's cross-site POST names its origin; it must be this server."""
        origin = request.headers.get("Origin")
        if not origin or origin == "null":
            return origin is None
        return origin.split("://", 1)[-1] == request.headers.get("Host", "")

    def _write_refused(self, request, session: Session | None, form) -> Reply | None:
        if session is None:
            return _html(
                403,
                render_error(
                    "Sign in first",
                    "This form writes: it needs a signed-in session "
                    "(and its CSRF token). Sign in at /login and try again.",
                ),
            )
        if not self._same_origin(request) or not self.sessions.csrf_ok(session, form.get("csrf")):
            return _html(
                403,
                render_error(
                    "Refused",
                    "The form's CSRF token is missing or wrong, or it came from "
                    "another site. Reload the page and try again.",
                    **self.chrome(session),
                ),
            )
        return None

    def login_page(self, request) -> Reply:
        return _html(
            200, render_login(needs_token=not self.sessions.open, next_url=_safe_next(request.query.get("next")))
        )

    async def login(self, request) -> Reply:
        form = await request.post()
        next_url = _safe_next(form.get("next"))
        if not self._same_origin(request):
            return _html(403, render_error("Refused", "Sign-in from another site is refused."))
        reviewer = valid_reviewer(str(form.get("reviewer", "")))
        if reviewer is None:
            return _html(
                400,
                render_login(
                    needs_token=not self.sessions.open,
                    next_url=next_url,
                    error="Give your name (1 to 64 characters): it is recorded with every review.",
                ),
            )
        if not self.sessions.open:
            import hmac

            token = str(form.get("token", ""))
            expected = self.worker.settings.api_token or ""
            if not hmac.compare_digest(token.encode("utf-8"), expected.encode("utf-8")):
                log_event(log, logging.WARNING, "login_refused", reviewer=reviewer)
                return _html(401, render_login(needs_token=True, next_url=next_url, error="Wrong API token."))
        log_event(log, logging.INFO, "login", reviewer=reviewer)
        cookie = self.sessions.issue(reviewer, now=time.time())
        return _redirect(next_url, **{"Set-Cookie": self.sessions.cookie_header(cookie)})

    async def logout(self, request) -> Reply:
        session = self.session(request)
        refused = self._write_refused(request, session, await request.post())
        if refused is not None:
            return refused
        return _redirect("/", **{"Set-Cookie": self.sessions.cookie_header("", max_age=0)})

    # -- the review queue --------------------------------------------------------------------

    def _queue(self, dataset: str, query) -> tuple[str, str | None, str | None] | str:
        kind = query.get("kind", "shuffle")
        if kind not in KIND_MODES:
            return f"kind: expected one of {', '.join(KIND_MODES)}, got {kind!r}"
        label = query.get("label") or None
        q = (query.get("q") or "").strip() or None
        if kind == "search" and not q:
            return "a search queue needs words to search for (q)"
        return kind, label, q

    async def _items(self, engine, dataset: str, kind: str, label: str | None, q: str | None) -> list:
        if kind == "search":
            return [
                Suggestion(message_id=m.id, kind="shuffle", label=None, score=0.0, reason=f"matches “{q}”")
                for m in await self._search(dataset, q or "")
            ]
        return await self.worker.call(engine.suggestions, kind, label=label, limit=QUEUE_DEPTH)

    async def _search(self, dataset: str, q: str):
        """Search the held messages in a thread (long emails make it slow), on a copy of the store."""
        return await asyncio.to_thread(search, self.store.recent(), dataset, q, SEARCH_LIMIT)

    async def review_page(self, request, dataset: str) -> Reply:
        session = self.session(request)
        if session is None:
            return self.login_redirect(request)
        engine = self.worker.engine(dataset)
        if engine is None:
            return _html(404, pages.render_missing(dataset, self.worker.owned()))
        queue = self._queue(dataset, request.query)
        if isinstance(queue, str):
            return _html(400, render_error("Bad queue", queue, **self.chrome(session)))
        kind, label, q = queue
        reviewer, now = session.reviewer, time.time()
        sent = request.query.get("sent")
        wanted = request.query.get("id")
        items = await self._items(engine, dataset, kind, label, q)
        if not wanted:
            held = lambda message_id: self.store.get(dataset, message_id) is not None  # noqa: E731
            item = self.queues.pick(dataset, items, reviewer, now=now, available=held)
            if item is None:
                missing = sum(1 for s in items if not held(s.message_id))
                return _html(
                    200,
                    render_queue_empty(
                        dataset,
                        kind,
                        label,
                        q,
                        reviewer=reviewer,
                        csrf=self.sessions.csrf(session),
                        sent=sent,
                        missing_text=missing,
                    ),
                )
            return _redirect(_queue_url(dataset, kind, label, q, message_id=item.message_id, sent=sent))
        message = self.store.get(dataset, wanted)
        if message is None:
            return _html(
                404,
                render_error(
                    "Message not held",
                    f"The text of message {wanted!r} is not among the "
                    f"{len(self.store)} recent messages this worker keeps "
                    "(REFINERY_WORKBENCH_MESSAGES).",
                    **self.chrome(session),
                ),
            )
        other = self.queues.open(dataset, wanted, reviewer, now=now)

        def gather():
            prediction = engine.predict(message)
            reviewed, pinned = pinned_labels(engine, wanted)
            return prediction, reviewed, pinned, tuple(engine.labels)

        prediction, reviewed, pinned, taxonomy = await self.worker.call(gather)
        reason = next((s.reason for s in items if s.message_id == wanted), "")
        remaining = sum(
            1 for s in items if s.message_id != wanted and not self.queues.just_reviewed(dataset, s.message_id, now=now)
        )
        view = ReviewView(
            dataset=dataset,
            kind=kind,
            label=label,
            query=q,
            message=message,
            confidences=prediction.confidences,
            predicted=prediction.labels,
            pinned=pinned,
            taxonomy=taxonomy,
            reviewed=reviewed,
            reason=reason,
            other_reviewer=other,
            remaining=remaining,
            sent=sent,
        )
        return _html(200, render_review(view, csrf=self.sessions.csrf(session), reviewer=reviewer))

    async def submit(self, request, dataset: str) -> Reply:
        form = await request.post()
        session = self.session(request)
        refused = self._write_refused(request, session, form)
        if refused is not None or session is None:  # (no session is refused too)
            return refused or _html(403, "")
        engine = self.worker.engine(dataset)
        if engine is None:
            return _html(404, pages.render_missing(dataset, self.worker.owned()))
        queue = self._queue(dataset, form)
        message_id = str(form.get("message_id", ""))
        if isinstance(queue, str) or not message_id:
            return _html(
                400,
                render_error(
                    "Bad review", queue if isinstance(queue, str) else "message_id: required", **self.chrome(session)
                ),
            )
        kind, label, q = queue
        action = form.get("action", "review")
        now = time.time()
        if action == "skip":
            self.queues.skipped(dataset, message_id, session.reviewer, now=now)
            return _redirect(_queue_url(dataset, kind, label, q))
        if action not in ("review", "remove"):
            return _html(
                400,
                render_error(
                    "Bad review", f"action: expected review, skip or remove, got {action!r}", **self.chrome(session)
                ),
            )
        try:
            labels = (
                parse_labels(list(form.getall("labels", [])), str(form.get("new_labels", "")))
                if action == "review"
                else ()
            )
            annotation = Annotation(
                dataset=dataset,
                message_id=message_id,
                timestamp=now,
                labels=labels,
                mode=KIND_MODES[kind],
                annotator=session.reviewer,
                action=action,
                message=self.store.get(dataset, message_id) if action == "review" else None,
            )
            annotation = Annotation.from_dict(annotation.to_dict())  # the contract's own checks
        except SchemaError as error:
            back = _queue_url(dataset, kind, label, q, message_id=message_id)
            return _html(
                400, render_error("Bad review", f"{error}. Go back and correct it: {back}", **self.chrome(session))
            )
        try:
            await self.worker.send_annotation(annotation)
        except Exception as error:
            log_event(log, logging.ERROR, "review_not_sent", dataset=dataset, message_id=message_id, error=repr(error))
            return _html(
                503,
                render_error(
                    "Review not sent",
                    f"Kafka did not take the review ({type(error).__name__}); nothing was recorded. Try again.",
                    **self.chrome(session),
                ),
            )
        self.queues.reviewed(dataset, message_id, session.reviewer, now=now)
        self.store.touch(dataset, message_id)
        log_event(
            log,
            logging.INFO,
            "review_sent",
            dataset=dataset,
            message_id=message_id,
            mode=annotation.mode,
            action=action,
            annotator=session.reviewer,
            labels=[a.name for a in labels],
        )
        return _redirect(_queue_url(dataset, kind, label, q, sent=message_id))

    # -- search, label page, live values -------------------------------------------------------

    async def search_page(self, request, dataset: str) -> Reply:
        session = self.session(request)
        engine = self.worker.engine(dataset)
        if engine is None:
            return _html(404, pages.render_missing(dataset, self.worker.owned()))
        q = (request.query.get("q") or "").strip()
        label = request.query.get("label") or None
        found = await self._search(dataset, q) if q else []

        def gather():
            return [(m, *pinned_labels(engine, m.id)) for m in found]

        hits = (
            [SearchHit(message=m, reviewed=r, pinned=p) for m, r, p in await self.worker.call(gather)] if found else []
        )
        chrome = self.chrome(session)
        return _html(
            200,
            render_search(
                dataset,
                q,
                label,
                hits,
                reviewer=chrome.get("reviewer"),
                csrf=chrome.get("csrf"),
                held=sum(1 for d, _ in self.store.messages if d == dataset),
            ),
        )

    async def label_page(self, request, dataset: str) -> Reply:
        session = self.session(request)
        engine = self.worker.engine(dataset)
        if engine is None:
            return _html(404, pages.render_missing(dataset, self.worker.owned()))
        label = request.query.get("name", "")
        if label not in getattr(engine, "labels", ()):
            return _html(
                404,
                render_error(
                    "No such label", f"Dataset {dataset!r} has no label {label!r} yet.", **self.chrome(session)
                ),
            )

        def gather(engine):
            snapshot = engine.metrics(now=time.time())
            curve = engine.curve(label, 200)
            queues = {
                kind: engine.suggestions(kind, label=label, limit=5)
                for kind in ("teach_label", "check_label", "missed_label")
            }
            return snapshot.labels[label], curve, queues

        metrics, curve, queues = await self.worker.read_frozen(engine, gather)
        t = metrics.thresholds
        svg = charts.pr_curve(
            curve["points"],
            {"balanced": t.balanced, "high precision": t.high_precision, "high recall": t.high_recall},
            title=f"Precision-recall curve of {label}",
        )
        return _html(200, pages.render_label(dataset, label, metrics, svg, queues, **self.chrome(session)))

    def dataset_charts(self, dataset: str, mix: list[tuple[str, float]] | None = None) -> dict[str, str]:
        """The dataset page's charts over time (and the live label mix when given), by element id."""
        points = self.history.points(dataset)
        out = {
            "chart-rating": charts.line_chart(
                {
                    "rating": [(p.timestamp, p.rating) for p in points],
                    **{
                        name: [(p.timestamp, p.factors.get(key)) for p in points]
                        for key, name in (
                            ("all_labels", "all labels"),
                            ("underperforming_labels", "underperforming"),
                            ("coverage", "coverage"),
                            ("balance", "balance"),
                        )
                    },
                },
                title="Rating and factors over time",
            ),
            "chart-coverage": charts.line_chart(
                {
                    "coverage %": [(p.timestamp, p.coverage) for p in points],
                    "balance": [(p.timestamp, p.balance) for p in points],
                },
                title="Coverage and balance over time",
            ),
        }
        if mix is not None:
            out["chart-mix"] = charts.bars(mix, title="Live label mix")
        return out

    def live(self, dataset: str) -> Reply:
        """The dataset's values that its pages update in place, from the metrics last published."""
        snapshot = self.worker.latest_metrics().get(dataset)
        if snapshot is None:
            return json_reply({"values": {}, "charts": {}}, 404 if self.worker.engine(dataset) is None else 200)
        self.history.record(snapshot)
        return json_reply(
            {
                "values": pages.dataset_live_values(snapshot),
                "charts": self.dataset_charts(dataset),
                "version": pages.dataset_version(snapshot),
            }
        )

    def live_index(self) -> Reply:
        latest = self.worker.latest_metrics()
        rows = [(d, 0, latest.get(d)) for d in self.worker.owned()]
        return json_reply({"values": pages.index_live_values(rows), "version": pages.index_version(rows)})

    @staticmethod
    def static(name: str) -> Reply:
        if name not in STATIC:
            return Reply(404, b"not found", "text/plain")
        body = resources.files("agents.web").joinpath("static", name).read_bytes()
        return Reply(200, body, STATIC[name], {"Cache-Control": "no-cache"})

    # -- background ----------------------------------------------------------------------------

    def sample(self) -> None:
        """Record each owned dataset's latest published metrics in the history."""
        owned = set(self.worker.owned())
        for dataset, snapshot in self.worker.latest_metrics().items():
            if dataset in owned:
                self.history.record(snapshot)
        self.history.retain(owned)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Backfill the message store and fill the history until ``stop`` (the worker's lifetime)."""
        stop = stop or asyncio.Event()

        async def sampling():
            while not stop.is_set():
                self.sample()
                await asyncio.sleep(1.0)

        await asyncio.gather(
            backfill_events(
                self.store, self.worker.settings, self.worker.events_topic, self.worker.partitions, stop=stop
            ),
            sampling(),
        )


def _safe_next(raw) -> str:
    """A local path to go back to after signing in (never another site)."""
    raw = str(raw or "/")
    return raw if raw.startswith("/") and not raw.startswith("//") and "\\" not in raw else "/"


def _queue_url(
    dataset: str, kind: str, label: str | None, q: str | None, *, message_id: str | None = None, sent: str | None = None
) -> str:
    params = [("kind", kind)] + [
        (k, v) for k, v in (("label", label), ("q", q), ("id", message_id), ("sent", sent)) if v
    ]
    return f"/datasets/{quote(dataset, safe='')}/review?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in params)
