"""The readers shared by `send` and `replay`: labelled messages (text and labels together) in
CSV and JSON, and the one label rule of both commands."""

from __future__ import annotations

import json

import pytest

from agents.ingest.readers import ColumnMapping, Defaults, InputError, Rejected, labelled_pairs, read_records
from schemas import Annotation, Message

SUPPORT = Defaults(dataset="support", timestamp=1_800_000_000.0)


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def kinds(path, kind=None, mapping=ColumnMapping(), defaults=SUPPORT):
    return [(number, type(record).__name__) for number, record in read_records(path, mapping, kind, defaults)]


def test_a_csv_with_text_and_labels_gives_each_row_as_a_message_then_its_review(tmp_path):
    path = write(tmp_path, "my.csv", "text,labels\nwhere is my card,Card\nrefund me,Refund;Urgent\n")
    records = list(read_records(path, defaults=SUPPORT))
    assert [(number, type(record).__name__) for number, record in records] == [
        (1, "Message"),
        (1, "Annotation"),
        (2, "Message"),
        (2, "Annotation"),
    ]
    message, review = records[2][1], records[3][1]
    assert (message.id, message.body, message.dataset) == ("my-2", "refund me", "support")
    assert review.message_id == "my-2" and review.message == message
    assert [label.name for label in review.labels] == ["Refund", "Urgent"]


def test_kind_annotations_sends_only_the_reviews_and_kind_messages_only_the_messages(tmp_path):
    path = write(tmp_path, "my.csv", "text,labels\nwhere is my card,Card\n")
    assert kinds(path, "annotations") == [(1, "Annotation")]
    assert kinds(path, "messages") == [(1, "Message")]


def test_a_labels_column_without_text_gives_reviews_of_messages_sent_before(tmp_path):
    path = write(tmp_path, "reviews.csv", "id,labels\nm-1,Card\n")
    [(_, review)] = read_records(path, defaults=SUPPORT)
    assert isinstance(review, Annotation) and review.message is None


def test_kind_both_needs_a_text_column_and_says_which_flag_names_it(tmp_path):
    with pytest.raises(InputError, match=r"messages need a text column \(name it with --text-column"):
        read_records(write(tmp_path, "r.csv", "id,labels\nm-1,Card\n"), kind="both", defaults=SUPPORT)


def test_a_csv_without_a_dataset_is_refused_before_any_row_naming_the_flag(tmp_path):
    path = write(tmp_path, "my.csv", "text,labels\nwhere is my card,Card\n")
    with pytest.raises(
        InputError, match=r"^.*my.csv: which dataset do these records belong to\? Name it with --dataset NAME"
    ):
        read_records(path, defaults=Defaults(timestamp=0))


def test_a_dataset_column_names_the_dataset_of_each_row(tmp_path):
    path = write(tmp_path, "my.csv", "dataset,text\nsales,hello\n")
    [(_, message)] = read_records(path, defaults=Defaults(timestamp=0))
    assert message.dataset == "sales"


def test_an_invalid_labelled_row_is_one_reject_not_two(tmp_path):
    path = write(tmp_path, "my.csv", "text,labels,channel\n,Card,chat\nhi,Card,fax\n")
    records = list(read_records(path, defaults=SUPPORT))
    assert [(number, type(record).__name__) for number, record in records] == [(1, "Rejected"), (2, "Rejected")]
    assert records[1][1].reason == "message.channel: expected one of 'email', 'chat', 'call', 'other', got 'fax'"


def test_a_label_listed_twice_in_a_cell_is_pinned_once(tmp_path):
    path = write(tmp_path, "my.csv", "text,labels\nhi,Card;Card\n")
    [_, (_, review)] = read_records(path, defaults=SUPPORT)
    assert [label.name for label in review.labels] == ["Card"]


def test_the_label_separator_is_configurable(tmp_path):
    path = write(tmp_path, "my.csv", "text,labels\nhi,Card > Delivery|Urgent\n")
    [_, (_, review)] = read_records(path, ColumnMapping(label_separator="|"), defaults=SUPPORT)
    assert [label.name for label in review.labels] == ["Card > Delivery", "Urgent"]


def test_a_json_record_with_labels_and_no_message_id_is_a_labelled_message(tmp_path):
    path = write(
        tmp_path,
        "my.jsonl",
        json.dumps({"id": "m-1", "timestamp": 5, "text": "hi", "labels": ["Card", {"name": "Urgent"}], "mode": "teach"})
        + "\n",
    )
    (_, message), (_, review) = read_records(path, defaults=SUPPORT)
    assert message == Message(dataset="support", id="m-1", timestamp=5, body="hi")
    assert ([label.name for label in review.labels], review.mode, review.message) == (
        ["Card", "Urgent"],
        "teach",
        message,
    )


def test_a_json_labelled_message_without_a_time_gets_the_default_one_and_a_plain_message_does_not(tmp_path):
    path = write(tmp_path, "my.jsonl", '{"id": "m-1", "body": "hi", "labels": []}\n{"id": "m-2", "body": "hi"}\n')
    records = list(read_records(path, defaults=SUPPORT))
    assert records[0][1].timestamp == 1_800_000_000.0
    assert isinstance(records[-1][1], Rejected) and records[-1][1].reason.startswith(
        "message.timestamp: expected a value"
    )


def test_labelled_pairs_are_what_replay_reads_and_reviews_without_their_message_are_set_aside(tmp_path):
    path = write(
        tmp_path,
        "my.jsonl",
        '{"id": "m-1", "timestamp": 0, "body": "hi", "labels": ["A"]}\n'
        '{"message_id": "m-0", "timestamp": 0, "labels": []}\n',
    )
    rejected = []
    pairs = list(
        labelled_pairs(
            read_records(path, kind="annotations", defaults=SUPPORT), lambda n, r: rejected.append((n, r.group))
        )
    )
    assert [(m.id, a.message_id, a.message) for m, a in pairs] == [("m-1", "m-1", None)]
    assert rejected == [(2, "annotation.message: expected a labelled message")]
