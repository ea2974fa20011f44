"""The dashboard pages (`agents.web.pages`): what they show, that they escape what users wrote, that
they stand alone (no external assets), and that a running worker serves them."""

from __future__ import annotations

import dataclasses
import random
import re
import time
import urllib.error
from html import escape, unescape
from urllib.parse import quote

import orjson
import pytest

from agents.ingest.datasets import banking77
from agents.web.pages import (
    ACTIONS_SHOWN,
    STATIC_SCRIPT,
    SUGGESTIONS_SHOWN,
    render_dataset,
    render_index,
    render_missing,
    render_unauthorised,
)
from agents.worker.sequencer import owner_partition
from pipeline import Refiner
from schemas import (
    SUGGESTION_KINDS,
    Action,
    Balance,
    DriftEvent,
    Factor,
    LabelMetrics,
    LabelWarning,
    MetricsSnapshot,
    Prediction,
    Rating,
    Suggestion,
    SuggestionList,
)
from tests.worker.test_worker_kafka import (  # noqa: F401 (fixture)
    PARTITIONS,
    _pairs,
    _producer,
    _read_all,
    _send,
    _wait_for,
    workers,
)

SCRIPT = "<script>alert('x')</script>"
OWN_SCRIPT = f'<script src="{STATIC_SCRIPT}" defer></script>'


@pytest.fixture(scope="module")
def engine(datasets):
    """A Refiner fed 600 shuffled Banking77 messages, a third of them reviewed."""
    pairs = list(banking77())[:3000]
    random.Random(0).shuffle(pairs)
    refiner = Refiner("banking77", seed=0)
    for i, (message, review) in enumerate(pairs[:600]):
        refiner.observe(message)
        if i % 3 == 0:
            refiner.annotate(dataclasses.replace(review, message=message, mode="shuffle"))
    return refiner


def _lists(engine, dataset="banking77", limit=50) -> list[SuggestionList]:
    return [
        SuggestionList(
            dataset=dataset,
            timestamp=0,
            model_version=1,
            kind=kind,
            label=None,
            items=tuple(engine.suggestions(kind, limit=limit)),
        )
        for kind in SUGGESTION_KINDS
    ]


def _snapshot(**changes) -> MetricsSnapshot:
    base = MetricsSnapshot(
        dataset="support",
        timestamp=1_796_030_100,
        model_version=7,
        reviewed=40,
        labels={
            "Card": LabelMetrics(
                precision=0.9, recall=0.75, f1=0.818, average_precision=0.88, threshold=0.41, support=8, pinned=12
            )
        },
        map=0.88,
        coverage=0.6,
        balance=Balance(score=70.0, similarity=0.9, shuffle_share=0.2),
        rating=Rating(score=72.5, band="Good", ready=False, factors={"coverage": Factor(score=60.0, band="Average")}),
    )
    return dataclasses.replace(base, **changes)


_BLOCK = re.compile(r"</?(?:td|th|tr|div|h1|h2|h3|p|li|br|ul|table|header|footer|main|title)\b[^>]*>")


def _text(html: str) -> str:
    """The page's visible text as a reader sees it: tags dropped (cells and blocks apart),
    entities decoded, whitespace collapsed."""
    html = re.sub(r"<style>.*?</style>", "", html, flags=re.S)
    return " ".join(unescape(re.sub(r"<[^>]+>", "", _BLOCK.sub(" ", html))).split())


def _num(value, digits=3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


# -- the dataset page ---------------------------------------------------------------------------


def test_the_dataset_page_shows_the_rating_band_ready_flag_and_each_factor(engine):
    snapshot = engine.metrics(now=time.time())
    text = _text(render_dataset(snapshot, _lists(engine)))
    assert f"rating {snapshot.rating.score:.1f}" in text
    assert snapshot.rating.band in text
    assert ("not ready" if not snapshot.rating.ready else "ready") in text
    for name, factor in snapshot.rating.factors.items():
        assert f"{name} {factor.score:.1f} {factor.band}" in text
        for metric in factor.metrics:
            assert metric in text


def test_the_dataset_page_shows_map_coverage_and_balance(engine):
    snapshot = engine.metrics(now=time.time())
    text = _text(render_dataset(snapshot, []))
    assert f"MAP {_num(snapshot.map)}" in text
    assert f"coverage {100 * snapshot.coverage:.1f}%" in text
    assert f"balance {_num(snapshot.balance.score, 1)}" in text
    shares = snapshot.balance.shuffle_share, snapshot.balance.search_share
    assert f"shuffle share {100 * shares[0]:.1f}%, search share {100 * shares[1]:.1f}%" in text


def _rows(html: str, caption_header: str) -> list[list[str]]:
    """The cells' text of the table whose header row starts with ``caption_header``."""
    start = html.index(f"<tr><th scope=col>{caption_header}</th>")
    table = html[start : html.index("</table>", start)]
    return [
        [_text(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", table)
        if "<td" in row
    ]


def test_every_label_is_in_the_table_with_its_figures_worst_average_precision_first(engine):
    snapshot = engine.metrics(now=time.time())
    html = render_dataset(snapshot, [])
    rows = _rows(html, "label")
    assert sorted(row[0] for row in rows) == sorted(snapshot.labels)
    aps = [snapshot.labels[row[0]].average_precision for row in rows]
    defined = [ap for ap in aps if ap is not None]
    assert defined == sorted(defined) and aps[: len(defined)] == defined  # undefined AP last
    m = snapshot.labels[rows[0][0]]
    assert rows[0][1:8] == [
        _num(m.precision),
        _num(m.recall),
        _num(m.f1),
        _num(m.average_precision),
        _num(m.threshold),
        str(m.support),
        str(m.pinned),
    ]


def test_each_label_links_to_its_page_and_its_pinned_count_updates_in_place(engine):
    snapshot = engine.metrics(now=time.time())
    html = render_dataset(snapshot, [])
    for label, m in snapshot.labels.items():
        assert f'href="/datasets/banking77/label?name={quote(label, safe="")}"' in html
        assert f'<span data-live="pinned:{escape(label)}">{m.pinned}</span>' in html
    assert f'<span data-live="reviewed">{snapshot.reviewed}</span>' in html
    assert 'data-live-url="/datasets/banking77/live"' in html


def test_label_warnings_are_shown_with_their_actions():
    warning = LabelWarning(
        code="few_pinned", severity="red", message="only 3 pinned examples", action="teach it on 22 more messages"
    )
    snapshot = _snapshot(labels={"Card": dataclasses.replace(_snapshot().labels["Card"], warnings=(warning,))})
    text = _text(render_dataset(snapshot, []))
    assert "red only 3 pinned examples → teach it on 22 more messages" in text


def test_recommended_actions_and_drift_events_are_listed(engine):
    snapshot = dataclasses.replace(
        engine.metrics(now=time.time()),
        drift=(
            DriftEvent(
                label="card_arrival",
                kind="confidence_shift",
                when=1_796_030_100,
                detail="mean confidence fell from 0.8 to 0.4",
            ),
        ),
    )
    text = _text(render_dataset(snapshot, []))
    assert snapshot.actions
    for action in snapshot.actions:
        assert f"{action.kind} {action.label or '–'} {action.why} {action.expected_gain:.1f}" in text
    assert "2026-11-30 09:15:00 UTC card_arrival confidence_shift mean confidence fell from 0.8 to 0.4" in text


def test_the_first_ten_suggestions_of_each_kind_are_shown_with_id_label_score_and_reason(engine):
    lists = _lists(engine, limit=50)
    html = render_dataset(engine.metrics(now=time.time()), lists)

    def row(s):
        return (
            f"{escape(s.message_id)}</a></td><td>{escape(s.label or '–')}</td><td class=n>{s.score:.3f}</td>"
            f"<td>{escape(s.reason)}</td>"
        )

    for suggestions in lists:
        assert len(suggestions.items) > SUGGESTIONS_SHOWN
        shown = suggestions.items[:SUGGESTIONS_SHOWN]
        assert all(row(s) in html for s in shown)
        assert not any(
            row(s) in html
            for s in suggestions.items[SUGGESTIONS_SHOWN:]
            if s.message_id not in {t.message_id for t in shown}
        )


def test_the_dataset_page_links_to_the_json_api_and_prometheus():
    html = render_dataset(_snapshot(dataset="a b/c"), [])
    assert 'href="/datasets/a%20b%2Fc/metrics"' in html
    assert 'href="/datasets/a%20b%2Fc/suggestions?kind=shuffle"' in html
    assert 'href="/metrics"' in html


def test_a_dataset_without_reviews_says_no_reviews_yet_instead_of_an_empty_table(datasets):
    refiner = Refiner("fresh", seed=0)
    for message, _ in list(banking77(dataset="fresh"))[:20]:
        refiner.observe(message)
    text = _text(render_dataset(refiner.metrics(now=time.time()), _lists(refiner, "fresh")))
    assert "No reviews yet." in text
    assert "No labels yet" in text
    assert "rating 0.0" in text


# -- escaping and self-containment -------------------------------------------------------------


def test_strings_from_the_data_are_escaped_everywhere():
    metrics = dataclasses.replace(
        _snapshot().labels["Card"],
        warnings=(LabelWarning(code=SCRIPT, severity="amber", message=SCRIPT, action=SCRIPT),),
    )
    snapshot = _snapshot(
        dataset="d<i>",
        labels={SCRIPT: metrics},
        rating=Rating(
            score=10.0,
            band="Poor",
            ready=False,
            factors={SCRIPT: Factor(score=1.0, band="Poor", metrics={SCRIPT: 1.0})},
        ),
        actions=(Action(kind="check_label", label=SCRIPT, why=SCRIPT, expected_gain=1.0),),
        drift=(DriftEvent(label=SCRIPT, kind="shift", when=0, detail=SCRIPT),),
    )
    lists = [
        SuggestionList(
            dataset="d<i>",
            timestamp=0,
            model_version=1,
            kind="check_label",
            label=SCRIPT,
            items=(Suggestion(message_id=SCRIPT, kind="check_label", label=SCRIPT, score=0.5, reason=SCRIPT),),
        )
    ]
    for html in (
        render_dataset(snapshot, lists),
        render_index([(SCRIPT, 0, snapshot)]),
        render_missing(SCRIPT, [SCRIPT]),
    ):
        html = html.replace(OWN_SCRIPT, "")
        assert "<script" not in html and "<i>" not in html
        assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html


def test_the_pages_load_nothing_from_outside_the_worker(engine):
    snapshot = engine.metrics(now=time.time())
    for html in (
        render_dataset(snapshot, _lists(engine)),
        render_index([("banking77", 0, snapshot)]),
        render_missing("x", []),
        render_unauthorised(),
    ):
        assert not re.search(r"""(src|href|action)=["']?(https?:)?//""", html)
        assert OWN_SCRIPT in html  # the one script is the worker's own
        assert "<script" not in html.replace(OWN_SCRIPT, "") and "@import" not in html and "url(" not in html


def test_the_pages_update_in_place_and_reload_every_five_seconds_without_script():
    for html in (render_dataset(_snapshot(), []), render_index([])):
        assert '<noscript><meta http-equiv="refresh" content="5"></noscript>' in html
        assert re.search(r'<body data-live-url="/(datasets/support/)?live" data-live-version="\d+">', html)


# -- the index and the error pages -------------------------------------------------------------


def test_the_index_lists_each_dataset_with_rating_band_ready_and_a_link():
    html = render_index([("support", 0, _snapshot()), ("sales", 2, None)])
    text = _text(html)
    assert "support 0 72.5 Good not ready 40 60.0% 0.880" in text
    assert "sales 2 no metrics yet" in text
    assert 'href="/datasets/support"' in html and 'href="/datasets/sales"' in html


def test_an_index_without_datasets_says_how_to_get_one():
    text = _text(render_index([]))
    assert "This worker owns no datasets yet" in text


def test_the_index_says_when_the_worker_is_still_restoring():
    assert "still restoring" in render_index([], ready=False)


def test_a_dataset_owned_elsewhere_names_the_ones_owned_here():
    text = _text(render_missing("billing", ["support", "sales"]))
    assert "billing is not owned by this worker (owned here: support, sales)" in text


# -- on a running worker -----------------------------------------------------------------------


def _owned(worker) -> bool:
    try:
        return bool(orjson.loads(worker.get("/datasets", timeout=5)[1])["datasets"])
    except OSError:
        return False


@pytest.mark.kafka
def test_a_running_worker_serves_both_pages_with_the_rating(topics, workers, datasets):
    worker = workers(topics)
    worker.wait_ready()
    pairs = _pairs(120)
    reviews = _send(_producer(topics), topics, pairs)
    sent = {message.id for message, _ in pairs}

    def applied():  # every review and every message (read beside the reviews) applied: the rating stays
        if not _owned(worker):
            return None
        if not sent <= {Prediction.decode(v).message_id for *_, v in _read_all(topics, "predictions")}:
            return None
        snapshot = MetricsSnapshot.from_dict(orjson.loads(worker.get("/datasets/banking77/metrics", timeout=10)[1]))
        return snapshot if snapshot.reviewed == reviews else None

    snapshot = _wait_for(applied, 60, f"{reviews} reviews applied", worker)
    rating = f"{snapshot.rating.score:.1f}"
    row = f"banking77 {owner_partition('banking77', PARTITIONS)} {rating}"

    def index():  # the index shows the metrics last published, every 0.5 s here
        status, body = worker.get("/", timeout=10)
        return (status, body.decode()) if row in _text(body.decode()) else None

    status, body = _wait_for(index, 30, f"the index to list banking77 with rating {rating}", worker)
    assert status == 200 and 'href="/datasets/banking77"' in body

    status, page = worker.get("/datasets/banking77", timeout=10)
    text = _text(page.decode())
    assert status == 200
    assert f"rating {rating}" in text and f"reviewed {reviews}" in text
    with pytest.raises(urllib.error.HTTPError) as missing:
        worker.get("/datasets/elsewhere", timeout=10)
    assert missing.value.code == 404 and "owned here: banking77" in _text(missing.value.read().decode())


def test_only_the_first_actions_are_open_and_the_rest_folded_away():
    actions = tuple(
        Action(kind="teach_label", label=f"label-{i}", why=f"reason {i}", expected_gain=10.0 - i) for i in range(8)
    )
    html = render_dataset(_snapshot(actions=actions), [])
    folded = html[html.index("<details>") : html.index("</details>")]
    assert "3 more actions" in folded
    assert ACTIONS_SHOWN == 5
    assert [f"label-{i}" in folded for i in range(8)] == [False] * 5 + [True] * 3
