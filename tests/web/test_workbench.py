"""The workbench's parts without a broker: sessions and CSRF, queues and leases, the labels of a
review, the message store's bounds and search, and the review page's escaping.
(The whole loop, in a browser on a real worker: test_workbench_browser.py.)"""

from __future__ import annotations

import dataclasses

import pytest

from agents.ingest.datasets import banking77
from agents.web.history import MetricsHistory
from agents.web.messages import MessageStore, decode_events
from agents.web.queue import KIND_MODES, ReviewQueues
from agents.web.review import ReviewView, SearchHit, body_html, render_login, render_review, render_search
from agents.web.session import SESSION_SECONDS, Sessions
from agents.web.workbench import WorkbenchOptions, parse_labels
from schemas import MODES, SUGGESTION_KINDS, Annotation, Event, Message, SchemaError, Suggestion

SCRIPT = "<script>alert('x')</script>"


def _items(n: int) -> list[Suggestion]:
    return [Suggestion(message_id=f"m{i}", kind="shuffle", label=None, score=0.0, reason="") for i in range(n)]


# -- sessions ------------------------------------------------------------------------------------


def test_a_session_cookie_is_httponly_samesite_strict_and_names_the_reviewer():
    sessions = Sessions("token")
    header = sessions.cookie_header(sessions.issue("Ann", now=0))
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Path=/" in header
    assert sessions.read(sessions.issue("Ann O'Neil | x", now=0), now=1).reviewer == "Ann O'Neil | x"


def test_a_forged_expired_or_other_token_cookie_is_refused():
    sessions = Sessions("token")
    cookie = sessions.issue("ann", now=0)
    assert sessions.read(cookie, now=SESSION_SECONDS + 1) is None
    assert Sessions("another token").read(cookie, now=1) is None
    name, issued, nonce, signature = cookie.split("|")
    assert sessions.read("|".join(["bob", issued, nonce, signature]), now=1) is None
    assert sessions.read("garbage", now=1) is None and sessions.read(None, now=1) is None


def test_the_csrf_token_belongs_to_one_session():
    sessions = Sessions("token")
    ann = sessions.read(sessions.issue("ann", now=0), now=1)
    bob = sessions.read(sessions.issue("bob", now=0), now=1)
    assert sessions.csrf_ok(ann, sessions.csrf(ann))
    assert not sessions.csrf_ok(ann, sessions.csrf(bob))
    assert not sessions.csrf_ok(ann, None) and not sessions.csrf_ok(None, sessions.csrf(ann))


def test_without_an_api_token_sessions_are_open_and_signed_with_a_process_secret():
    a, b = Sessions(None), Sessions(None)
    assert a.open and not Sessions("t").open
    assert b.read(a.issue("ann", now=0), now=1) is None  # another process's secret


# -- queues and leases ---------------------------------------------------------------------------


def test_two_reviewers_on_the_same_queue_are_shown_different_messages():
    queues = ReviewQueues()
    first = queues.pick("d", _items(3), "ann", now=0)
    assert queues.open("d", first.message_id, "ann", now=0) is None
    second = queues.pick("d", _items(3), "bob", now=1)
    assert second.message_id != first.message_id


def test_a_message_another_reviewer_has_open_comes_with_their_name():
    queues = ReviewQueues()
    queues.open("d", "m0", "ann", now=0)
    assert queues.open("d", "m0", "bob", now=1) == "ann"
    only = queues.pick("d", _items(1), "bob", now=1)  # nothing else left: shown, with the warning
    assert only.message_id == "m0" and queues.holder("d", "m0", "bob", now=1) == "ann"


def test_a_lease_ends_when_it_expires_or_its_reviewer_moves_on():
    queues = ReviewQueues(lease_seconds=10)
    queues.open("d", "m0", "ann", now=0)
    assert queues.holder("d", "m0", "bob", now=11) is None
    queues.open("d", "m0", "ann", now=20)
    queues.open("d", "m1", "ann", now=21)
    assert queues.holder("d", "m0", "bob", now=22) is None and queues.holder("d", "m1", "bob", now=22) == "ann"


def test_a_reviewed_message_leaves_the_queue_for_everyone_and_a_skip_only_for_the_skipper():
    queues = ReviewQueues()
    queues.reviewed("d", "m0", "ann", now=0)
    queues.skipped("d", "m1", "ann", now=0)
    assert queues.pick("d", _items(3), "ann", now=1).message_id == "m2"
    assert queues.pick("d", _items(3), "bob", now=1).message_id == "m1"


def test_messages_whose_text_is_not_held_are_not_offered():
    queues = ReviewQueues()
    assert queues.pick("d", _items(3), "ann", now=0, available=lambda i: i == "m2").message_id == "m2"
    assert queues.pick("d", _items(2), "ann", now=0, available=lambda i: False) is None


def test_every_training_mode_maps_to_a_review_mode_of_the_contract():
    assert set(KIND_MODES) == set(SUGGESTION_KINDS) | {"search"}
    assert set(KIND_MODES.values()) <= set(MODES) and KIND_MODES["search"] == "search"


# -- the labels of a review ----------------------------------------------------------------------


def test_ticked_and_typed_labels_are_normalised_and_parents_implied_by_a_child_dropped():
    labels = parse_labels(["Card", "Card > Lost", "Urgent"], "Billing>Refund,  Urgent ,")
    assert [label.name for label in labels] == ["Billing > Refund", "Card > Lost", "Urgent"]


def test_an_invalid_typed_label_is_a_clear_error():
    with pytest.raises(SchemaError, match=r"labels\[1\]"):
        parse_labels(["Card"], " > Lost")


# -- the message store ---------------------------------------------------------------------------


def test_the_store_is_bounded_by_count_and_by_bytes(datasets):
    by_count = MessageStore(max_messages=3, max_bytes=10**9)
    by_bytes = MessageStore(max_messages=10**6, max_bytes=2_000)
    messages = [m for m, _ in list(banking77())[:500]]
    for message in messages:
        by_count.put(message)
        by_bytes.put(dataclasses.replace(message, body=message.body + " " * 300))
    assert (
        len(by_count) == 3
        and [by_count.get("banking77", m.id) is not None for m in messages[-4:]] == [False] + [True] * 3
    )
    assert by_bytes.bytes <= 2_000 and 1 <= len(by_bytes) < 10


def test_search_finds_every_word_or_the_quoted_phrase_newest_first(datasets):
    store = MessageStore()
    messages = [m for m, _ in list(banking77())[:2000]]
    for m in messages:
        store.put(m)
    hits = store.search("banking77", "card ARRIVE")
    assert hits and all("card" in m.body.lower() and "arrive" in m.body.lower() for m in hits)
    assert [m.id for m in hits] == sorted((m.id for m in hits), key=[x.id for x in messages].index, reverse=True)
    phrase = store.search("banking77", '"my card"')
    assert phrase and all("my card" in m.body.lower() for m in phrase)
    assert store.search("other", "card") == [] and store.search("banking77", "  ") == []


def test_a_backfill_goes_behind_what_the_store_holds_and_never_pushes_it_out():
    store = MessageStore(max_messages=4)
    live = [Message(dataset="d", id=f"live{i}", timestamp=10 + i, body=f"live {i}") for i in range(2)]
    store.apply(live)
    old = [Message(dataset="d", id=f"old{i}", timestamp=i, body=f"old {i}") for i in range(4)]
    history = [*old, ("d", "old0"), live[0]]  # a review of old0 made it the most recent of the history
    store.backfill(history)
    # room for two: the most recent of the history (old0 after its review, then old3), behind the live ones
    assert [m.id for m in store.recent()] == ["live1", "live0", "old0", "old3"]
    store.apply([Message(dataset="d", id="new", timestamp=20, body="new")])  # the oldest backfilled goes first
    assert [m.id for m in store.recent()] == ["new", "live1", "live0", "old0"]
    store.backfill([Message(dataset="d", id="older", timestamp=0, body="x" * 10)])  # full: nothing older enters
    assert store.get("d", "older") is None and len(store) == 4
    small = MessageStore(max_messages=10, max_bytes=200)  # 79 counted per message below: two fit
    small.backfill([Message(dataset="d", id=f"b{i}", timestamp=i, body="y" * 15) for i in range(5)])
    assert [m.id for m in small.recent()] == ["b4", "b3"] and small.bytes == 158


def test_events_fill_the_store_and_a_review_keeps_its_message_recent():
    store = MessageStore(max_messages=2)
    m = [Message(dataset="d", id=f"m{i}", timestamp=i, body=f"text {i}") for i in range(3)]
    review = Annotation(dataset="d", message_id="m0", timestamp=9)
    raw = [Event(source_topic="t", partition=0, offset=i, message=m[i]).encode() for i in range(2)]
    raw += [Event(source_topic="a", partition=0, offset=0, annotation=review).encode(), b"{not json", None]
    raw += [Event(source_topic="t", partition=0, offset=2, message=m[2]).encode()]
    store.apply(decode_events(raw))
    assert store.get("d", "m0") is not None and store.get("d", "m1") is None and store.get("d", "m2") is not None


def test_the_history_keeps_at_most_its_bound_per_dataset():
    from tests.web.test_pages import _snapshot

    history = MetricsHistory(max_points=5)
    for t in range(20):
        history.record(_snapshot(timestamp=1_796_030_100 + t))
    assert len(history.points("support")) == 5 and history.points("support")[-1].timestamp == 1_796_030_119


def test_the_bounds_come_from_the_environment():
    options = WorkbenchOptions.from_env(
        {
            "REFINERY_WORKBENCH_MESSAGES": "50",
            "REFINERY_WORKBENCH_BYTES": "4096",
            "REFINERY_WORKBENCH_HISTORY": "10",
            "REFINERY_WORKBENCH_LEASE_SECONDS": "30",
        }
    )
    assert (options.messages, options.message_bytes, options.history, options.lease_seconds) == (50, 4096, 10, 30.0)
    with pytest.raises(ValueError, match="REFINERY_WORKBENCH_MESSAGES"):
        WorkbenchOptions.from_env({"REFINERY_WORKBENCH_MESSAGES": "many"})


# -- the pages -----------------------------------------------------------------------------------


def test_a_reply_quoted_in_an_email_is_folded_away():
    body = "Thanks, that works.\n\nOn Mon, 1 Dec 2026 at 09:00, Bank <help@bank.example> wrote:\n> Did it arrive?\n> Regards"
    html = body_html(body)
    visible, folded = html.split('<details class="quoted">')
    assert "Thanks, that works." in visible and "Did it arrive" not in visible
    assert "wrote:" in folded and "&gt; Did it arrive?" in folded and "(3 lines)" in folded


def test_everything_on_the_review_page_is_escaped():
    message = Message(
        dataset=SCRIPT, id=SCRIPT, timestamp=0, subject=SCRIPT, body=SCRIPT, sender=SCRIPT, metadata={SCRIPT: SCRIPT}
    )
    view = ReviewView(
        dataset=SCRIPT,
        kind="check_label",
        label=SCRIPT,
        query=SCRIPT,
        message=message,
        confidences={SCRIPT: 0.9},
        predicted=(SCRIPT,),
        pinned=(SCRIPT,),
        taxonomy=(SCRIPT, f"{SCRIPT} > x"),
        reviewed=True,
        reason=SCRIPT,
        other_reviewer=SCRIPT,
        sent=SCRIPT,
        error=SCRIPT,
    )
    pages = [
        render_review(view, csrf=SCRIPT, reviewer=SCRIPT),
        render_search(
            SCRIPT,
            SCRIPT,
            SCRIPT,
            [SearchHit(message=message, pinned=(SCRIPT,), reviewed=True)],
            reviewer=SCRIPT,
            csrf=SCRIPT,
        ),
        render_login(needs_token=True, next_url=SCRIPT, error=SCRIPT),
    ]
    for html in pages:
        assert "<script>" not in html and "alert('x')" not in html


def test_the_review_form_carries_the_csrf_token_and_ticks_the_pinned_labels():
    message = Message(dataset="d", id="m-1", timestamp=0, body="card lost")
    view = ReviewView(
        dataset="d",
        kind="check_label",
        label="Card",
        query=None,
        message=message,
        confidences={"Card": 0.2, "Loan": 0.7},
        predicted=("Loan",),
        pinned=("Card",),
        taxonomy=("Card", "Loan"),
        reviewed=True,
        other_reviewer="bob",
    )
    html = render_review(view, csrf="tok", reviewer="ann")
    assert '<input type="hidden" name="csrf" value="tok">' in html
    assert 'value="Card" checked>' in html and 'value="Loan" data-predicted>' in html
    assert 'value="remove"' in html  # a reviewed message can be un-reviewed
    assert "bob</b> has this message open too" in html


# -- requests ------------------------------------------------------------------------------------


def test_after_sign_in_only_a_local_path_is_followed():
    from agents.web.workbench import _safe_next

    assert _safe_next("/datasets/d/review?kind=shuffle") == "/datasets/d/review?kind=shuffle"
    for elsewhere in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "", None, "javascript:alert(1)"):
        assert _safe_next(elsewhere) == "/"


@dataclasses.dataclass
class _Request:
    headers: dict


def test_a_post_naming_another_origin_is_not_same_origin():
    from agents.web.workbench import Workbench

    same = Workbench._same_origin
    assert same(_Request({"Host": "127.0.0.1:6066", "Origin": "http://127.0.0.1:6066"}))
    assert same(_Request({"Host": "127.0.0.1:6066"}))  # no Origin (an older browser, curl): the CSRF token decides
    assert not same(_Request({"Host": "127.0.0.1:6066", "Origin": "http://localhost:6066"}))
    assert not same(_Request({"Host": "127.0.0.1:6066", "Origin": "null"}))
