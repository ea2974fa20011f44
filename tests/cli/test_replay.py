"""Specification of `refinery replay`: a labelled file through the engine in-process, no broker."""

from __future__ import annotations

import json

import pytest

from agents.cli import main
from agents.cli.replay import replay
from agents.ingest.readers import ColumnMapping, Defaults, labelled_pairs, read_records
from pipeline import Refiner

CARD = ["my card has not arrived", "where is my new card", "card still not delivered", "when will my card come"]
REFUND = ["I want a refund", "please refund my money", "refund for the double charge", "give me my money back"]


def records(n=120):
    for i in range(n):
        card = i % 2 == 0
        yield {
            "id": f"r{i}",
            "text": (CARD if card else REFUND)[i % 4] + f" ({i})",
            "labels": ["Cards > Delivery"] if card else [{"name": "Refund"}],
        }


def test_a_jsonl_file_is_replayed_and_the_rating_factors_and_labels_are_printed(tmp_path, capsys):
    path = tmp_path / "tickets.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records()))
    assert main(["replay", str(path), "--review-share", "0.5", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "dataset tickets: 120 messages observed" in out
    assert "rating " in out and "/100" in out
    for factor in ("all_labels", "underperforming_labels", "coverage", "balance"):
        assert factor in out
    for label in ("Cards > Delivery", "Cards", "Refund"):
        assert f"\n{label} " in out


def pairs_of(path, **mapping):
    """The (Message, Annotation) pairs replay reads from ``path``."""
    defaults = Defaults(dataset=path.stem, timestamp=0.0)
    return labelled_pairs(read_records(path, ColumnMapping(**mapping), "annotations", defaults))


def test_a_json_list_and_a_csv_with_chosen_columns_are_read(tmp_path):
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps(list(records(4))))
    assert [m.id for m, _ in pairs_of(listed)] == ["r0", "r1", "r2", "r3"]
    table = tmp_path / "table.csv"
    table.write_text("body,queue\nwhere is my card,Cards|Urgent\nrefund me,Refund\n")
    rows = [
        (m.body, [label.name for label in a.labels]) for m, a in pairs_of(table, labels="queue", label_separator="|")
    ]
    assert rows == [("where is my card", ["Cards", "Urgent"]), ("refund me", ["Refund"])]


def test_a_missing_csv_column_is_named_with_the_flag_that_names_it(tmp_path):
    table = tmp_path / "table.csv"
    table.write_text("body,queue\nhello,A\n")
    with pytest.raises(
        SystemExit, match="need a labels column \\(name it with --label-column\\); the header has: body, queue"
    ):
        main(["replay", str(table), "--no-progress"])


def test_reviews_arrive_the_chosen_number_of_messages_later_and_pending_ones_at_the_end(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records(50)))
    order = []

    class Recording(Refiner):
        def observe(self, message):
            order.append(("observe", message.id))
            return super().observe(message)

        def annotate(self, annotation):
            order.append(("annotate", annotation.message_id))
            return super().annotate(annotation)

    engine, count = replay(pairs_of(path), lambda d: Recording(d), review_share=1.0, delay=10, seed=0, progress=False)
    assert count == 50 and engine.model_version == 50
    observed = [i for kind, i in order if kind == "observe"]
    for position, (kind, message_id) in enumerate(order):
        if kind == "annotate":
            seen = [k for k, _ in order[:position]].count("observe")
            assert seen == min(50, observed.index(message_id) + 1 + 10)


def test_the_review_share_is_seeded(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records(200)))
    runs = [replay(pairs_of(path), Refiner, review_share=0.3, delay=0, seed=7, progress=False)[0] for _ in range(2)]
    assert runs[0].snapshot() == runs[1].snapshot()
    assert 30 < runs[0].model_version < 90


def test_the_shared_banking77_data_set_is_replayed_by_name(datasets, capsys):
    assert (
        main(
            [
                "replay",
                "--bundled",
                "banking77",
                "--limit",
                "300",
                "--review-share",
                "0.5",
                "--no-progress",
                "--labels",
                "1",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "dataset banking77: 300 messages observed" in out
    assert "more labels (worst average precision shown first" in out


def _replayed_ids(monkeypatch, argv) -> list[str]:
    """The message ids `refinery replay ARGV` feeds the engine, in order (the real replay runs)."""
    from agents.cli import replay as command

    fed: list[str] = []

    def recording(pairs, *args, **kwargs):
        pairs = list(pairs)
        fed.extend(m.id for m, _ in pairs)
        return replay(pairs, *args, **kwargs)  # the real one, imported above

    monkeypatch.setattr(command, "replay", recording)
    assert main(["replay", *argv, "--no-progress", "--labels", "1"]) == 0
    return fed


def test_a_bundled_data_set_is_replayed_in_a_seeded_shuffled_order_by_default(datasets, monkeypatch, capsys):
    from agents.ingest.datasets import banking77

    labels = {m.id: a.labels[0].name for m, a in banking77()}
    argv = ["--bundled", "banking77", "--limit", "300", "--review-share", "0.2"]
    first = _replayed_ids(monkeypatch, argv)
    assert first == _replayed_ids(monkeypatch, argv)  # seeded: the same order again
    assert first != _replayed_ids(monkeypatch, [*argv, "--seed", "1"])
    assert len({labels[i] for i in first}) > 60  # the file is sorted by label: 300 in file order hold 3


def test_order_file_keeps_the_bundled_file_order(datasets, monkeypatch, capsys):
    fed = _replayed_ids(monkeypatch, ["--bundled", "banking77", "--limit", "300", "--order", "file"])
    assert fed == [f"train-{i:05d}" for i in range(300)]


def test_a_file_keeps_its_order_unless_asked_to_shuffle(tmp_path, monkeypatch, capsys):
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records(40)))
    assert _replayed_ids(monkeypatch, [str(path)]) == [f"r{i}" for i in range(40)]
    shuffled = _replayed_ids(monkeypatch, [str(path), "--order", "shuffled"])
    assert sorted(shuffled) == sorted(f"r{i}" for i in range(40)) and shuffled != [f"r{i}" for i in range(40)]
