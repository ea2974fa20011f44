"""`refinery send` without a broker: reading, column mapping, validation, rejects, summary."""

from __future__ import annotations

import json

import pytest

from agents import cli
from agents.ingest.send import (
    ColumnMapping,
    Defaults,
    InputError,
    Rejected,
    dataset_records,
    read_records,
    send_records,
    validate,
)
from schemas import Annotation, Message, SchemaError

SUPPORT = Defaults(dataset="support", timestamp=1_800_000_000.0)


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def results(path, mapping=ColumnMapping(), kind=None, defaults=SUPPORT):
    return list(read_records(path, mapping, kind, defaults))


def only(path, **kwargs):
    [(number, record)] = results(path, **kwargs)
    assert not isinstance(record, Rejected), record
    return record


# -- CSV column mapping ------------------------------------------------------------------------


def test_csv_columns_map_to_message_fields(tmp_path):
    path = write(
        tmp_path,
        "mail.csv",
        "Ref,Sent,Title,Text,From,To,Cc,Conv,Kind\n"
        "m-1,2026-11-30T09:15:00Z,Card,Not arrived,ann@x.com,help@bank.com,boss@x.com,t-7,email\n",
    )
    mapping = ColumnMapping(
        id="Ref",
        timestamp="Sent",
        subject="Title",
        body="Text",
        sender="From",
        to="To",
        cc="Cc",
        thread="Conv",
        channel="Kind",
    )
    assert only(path, mapping=mapping) == Message(
        dataset="support",
        id="m-1",
        timestamp=1796030100.0,
        channel="email",
        subject="Card",
        body="Not arrived",
        sender="ann@x.com",
        to="help@bank.com",
        cc="boss@x.com",
        thread_id="t-7",
    )


def test_csv_columns_named_like_fields_need_no_mapping(tmp_path):
    path = write(tmp_path, "mail.csv", "id,timestamp,subject,body,from,channel\nm-1,0,Hi,Hello,a@x.com,chat\n")
    message = only(path)
    assert (message.id, message.timestamp, message.subject, message.body, message.sender, message.channel) == (
        "m-1",
        0.0,
        "Hi",
        "Hello",
        "a@x.com",
        "chat",
    )


def test_a_text_column_is_the_body_when_there_is_no_body_column(tmp_path):
    assert only(write(tmp_path, "q.csv", "id,text\n1,Where is my card?\n")).body == "Where is my card?"


def test_other_columns_become_metadata_numbers_where_the_whole_column_is_numeric(tmp_path):
    path = write(
        tmp_path, "q.csv", "id,body,amount,count,country,zip,mixed\n1,a,120.5,3,UK,02134,7\n2,b,-4,10,FR,75001,n/a\n"
    )
    first, second = [record.metadata for _, record in results(path)]
    assert first == {"amount": 120.5, "count": 3, "country": "UK", "zip": "02134", "mixed": "7"}
    assert second == {"amount": -4, "count": 10, "country": "FR", "zip": "75001", "mixed": "n/a"}


def test_empty_metadata_cells_are_left_out(tmp_path):
    path = write(tmp_path, "q.csv", "id,body,amount,country\n1,a,,\n2,b,5,UK\n")
    assert [record.metadata for _, record in results(path)] == [{}, {"amount": 5, "country": "UK"}]


def test_without_an_id_column_ids_are_file_stem_and_row_number(tmp_path):
    path = write(tmp_path, "tickets.csv", "body\nfirst\nsecond\n")
    assert [record.id for _, record in results(path)] == ["tickets-1", "tickets-2"]


def test_without_a_timestamp_column_records_carry_the_default_time(tmp_path):
    assert only(write(tmp_path, "q.csv", "id,body\n1,a\n")).timestamp == 1_800_000_000.0


def test_epoch_seconds_in_a_timestamp_column_are_read_as_numbers(tmp_path):
    assert only(write(tmp_path, "q.csv", "id,timestamp,body\n1,1700000000.5,a\n")).timestamp == 1_700_000_000.5


def test_an_empty_timestamp_cell_is_rejected_not_defaulted(tmp_path):
    [(_, rejected)] = results(write(tmp_path, "q.csv", "id,timestamp,body\n1,,a\n"))
    assert rejected.reason == "message.timestamp: expected an ISO-8601 timestamp or epoch seconds, got ''"


def test_a_column_named_by_a_flag_must_exist(tmp_path):
    path = write(tmp_path, "q.csv", "id,text\n1,a\n")
    with pytest.raises(InputError, match=r"^--timestamp-column 'sent': no such column \(the header has: id, text\)$"):
        results(path, mapping=ColumnMapping(timestamp="sent"))


def test_a_file_that_is_not_utf8_is_refused_before_any_row_is_read(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"id,body\n1,fine\n2,caf\xe9\n")
    with pytest.raises(InputError, match=r"latin1.csv: not UTF-8 text \('utf-8' codec can't decode byte 0xe9"):
        read_records(path, defaults=SUPPORT)  # raises when called, not when iterated


def test_a_row_with_the_wrong_number_of_cells_is_rejected(tmp_path):
    [(number, rejected)] = results(write(tmp_path, "q.csv", "id,body\n1,a,extra\n"))
    assert number == 1
    assert rejected.reason == "message: expected 2 columns (as the header), got 3"


def test_csv_rows_are_numbered_from_the_first_row_after_the_header(tmp_path):
    path = write(tmp_path, "q.csv", 'id,body\n1,"two\nlines"\n2,\n')
    assert [(number, type(record).__name__) for number, record in results(path)] == [(1, "Message"), (2, "Rejected")]


# -- CSV annotations ---------------------------------------------------------------------------


def test_a_labels_column_makes_annotations_with_the_message_inline(tmp_path):
    path = write(tmp_path, "reviewed.csv", "id,body,labels,country\nm-1,Refund please,Billing > Refund;Urgent,UK\n")
    review = only(path)
    assert isinstance(review, Annotation)
    assert [label.name for label in review.labels] == ["Billing > Refund", "Urgent"]
    assert review.message_id == review.message.id == "m-1"
    assert review.message.metadata == {"country": "UK"}


def test_a_labels_cell_may_be_a_json_list_of_names_or_label_objects(tmp_path):
    path = write(
        tmp_path,
        "reviewed.csv",
        'id,body,labels\nm-1,a,"[""Card"", {""name"": ""Urgent"", ""sentiment"": ""negative""}]"\n',
    )
    assert only(path).labels[1].sentiment == "negative"


def test_an_empty_labels_cell_is_a_review_where_no_label_applies(tmp_path):
    assert only(write(tmp_path, "reviewed.csv", "id,body,labels\nm-1,a,\n")).labels == ()


def test_annotation_columns_named_mode_and_annotator_fill_the_review(tmp_path):
    path = write(tmp_path, "reviewed.csv", "id,body,labels,mode,annotator\nm-1,a,Card,teach,ann\n")
    review = only(path)
    assert (review.mode, review.annotator, review.message.metadata) == ("teach", "ann", {})


def test_a_labels_column_in_a_messages_file_is_metadata(tmp_path):
    path = write(tmp_path, "q.csv", "id,body,labels\nm-1,a,old-tag\n")
    assert only(path, kind="messages").metadata == {"labels": "old-tag"}


def test_annotations_need_a_labels_column(tmp_path):
    with pytest.raises(InputError, match="annotations need a labels column"):
        results(write(tmp_path, "q.csv", "id,body\n1,a\n"), kind="annotations")


# -- JSON and JSONL ----------------------------------------------------------------------------


def test_jsonl_records_are_guessed_messages_or_annotations(tmp_path):
    path = write(
        tmp_path,
        "mixed.jsonl",
        '{"id": "m-1", "timestamp": 1, "body": "a"}\n'
        '{"message_id": "m-1", "timestamp": 2, "labels": [{"name": "Card"}]}\n',
    )
    assert [type(record).__name__ for _, record in results(path)] == ["Message", "Annotation"]


def test_jsonl_blank_lines_are_skipped_and_numbers_are_file_lines(tmp_path):
    path = write(tmp_path, "m.jsonl", '\n{"id": "m-1", "timestamp": 1, "body": "a"}\n\n{"id": "m-2"\n')
    numbered = results(path)
    assert [number for number, _ in numbered] == [2, 4]
    assert (
        numbered[1][1].reason
        == "message: expected a JSON object, got invalid JSON (unexpected end of data: line 1 column 13 (char 12))"
    )


def test_a_json_file_holds_a_list_of_records_or_one_record(tmp_path):
    listed = write(
        tmp_path, "list.json", '[{"id": "a", "timestamp": 1, "body": "x"}, {"id": "b", "timestamp": 1, "body": "y"}]'
    )
    single = write(tmp_path, "one.json", '{"id": "a", "timestamp": 1, "body": "x"}')
    assert [(n, r.id) for n, r in results(listed)] == [(1, "a"), (2, "b")]
    assert [(n, r.id) for n, r in results(single)] == [(1, "a")]


def test_a_json_file_that_is_not_json_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not a JSON document"):
        results(write(tmp_path, "bad.json", "{"))


def test_a_records_own_dataset_wins_over_the_default(tmp_path):
    path = write(tmp_path, "m.jsonl", '{"dataset": "sales", "id": "m-1", "timestamp": 1, "body": "a"}\n')
    assert only(path).dataset == "sales"


def test_json_records_get_no_default_timestamp(tmp_path):
    [(_, rejected)] = results(write(tmp_path, "m.jsonl", '{"id": "m-1", "body": "a"}\n'))
    assert rejected.reason == "message.timestamp: expected a value (the field is required), got nothing"


def test_an_unknown_extension_needs_a_format(tmp_path):
    with pytest.raises(
        InputError, match=r"cannot tell the format from the extension '\.txt'; use --format csv\|jsonl\|json"
    ):
        results(write(tmp_path, "m.txt", ""))


# -- validation --------------------------------------------------------------------------------


def test_a_message_without_subject_or_body_is_invalid():
    with pytest.raises(SchemaError) as raised:
        validate({"dataset": "d", "id": "m-1", "timestamp": 0, "subject": " ", "body": ""})
    assert (
        str(raised.value)
        == "message.body: expected a subject or a body (a message without text cannot be classified), got neither"
    )


def test_a_message_with_only_a_subject_is_valid():
    assert validate({"dataset": "d", "id": "m-1", "timestamp": 0, "subject": "Refund"}).subject == "Refund"


def test_an_inline_message_gets_the_defaults_and_the_text_rule():
    defaults = Defaults(dataset="d", channel="email")
    review = validate(
        {"message_id": "m-1", "timestamp": 0, "labels": [], "message": {"id": "m-1", "timestamp": 0, "body": "a"}},
        defaults=defaults,
    )
    assert (review.message.dataset, review.message.channel) == ("d", "email")
    with pytest.raises(SchemaError, match="^annotation.message.body: expected a subject or a body"):
        validate(
            {"message_id": "m-1", "timestamp": 0, "labels": [], "message": {"id": "m-1", "timestamp": 0}},
            defaults=defaults,
        )


def test_the_body_limit_is_configurable():
    data = {"dataset": "d", "id": "m-1", "timestamp": 0, "body": "é" * 600}
    with pytest.raises(SchemaError, match=r"^message.body: expected at most 1000 UTF-8 bytes, got 1200 bytes$"):
        validate(data, defaults=Defaults(max_body_bytes=1000))
    assert validate(data).body == "é" * 600


# -- sending (dry run) and the rejects file ----------------------------------------------------


def test_a_dry_run_counts_valid_records_per_topic_and_writes_every_reject(tmp_path):
    path = write(
        tmp_path,
        "m.jsonl",
        '{"id": "m-1", "timestamp": 1, "body": "a"}\n'
        '{"id": "m-2", "timestamp": 1, "body": "b", "channel": "fax"}\n'
        '{"message_id": "m-1", "timestamp": 2, "labels": [{"name": "A > > B"}]}\n'
        '{"id": "m-3", "timestamp": 1, "body": "c", "channel": "pigeon"}\n',
    )
    rejects = tmp_path / "rejects.jsonl"
    summary = send_records(
        read_records(path, defaults=SUPPORT),
        {"messages": "t.messages", "annotations": "t.annotations"},
        dry_run=True,
        rejects_path=rejects,
        unit="line",
    )
    assert summary.sent == {"t.messages": 1}
    assert summary.rejected == {
        "message.channel: expected one of 'email', 'chat', 'call', 'other'": 2,
        "annotation.labels[0].name: expected a label name whose parts ('Parent > Child') are all non-empty": 1,
    }
    written = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [(entry["line"], entry["reason"]) for entry in written] == [
        (2, "message.channel: expected one of 'email', 'chat', 'call', 'other', got 'fax'"),
        (
            3,
            "annotation.labels[0].name: expected a label name whose parts ('Parent > Child') are all non-empty, got 'A > > B'",
        ),
        (4, "message.channel: expected one of 'email', 'chat', 'call', 'other', got 'pigeon'"),
    ]
    assert written[0]["raw"] == {"id": "m-2", "timestamp": 1, "body": "b", "channel": "fax"}


def test_a_clean_run_leaves_no_rejects_file_not_even_an_earlier_one(tmp_path):
    path = write(tmp_path, "m.jsonl", '{"id": "m-1", "timestamp": 1, "body": "a"}\n')
    rejects = write(tmp_path, "rejects.jsonl", '{"line": 1, "reason": "from an earlier run"}\n')
    send_records(
        read_records(path, defaults=SUPPORT), {"messages": "t", "annotations": "t"}, dry_run=True, rejects_path=rejects
    )
    assert not rejects.exists()


def test_the_summary_counts_rejects_by_reason_most_frequent_first(tmp_path):
    path = write(
        tmp_path, "m.jsonl", '{"id": "m-1", "timestamp": 1, "body": "a", "channel": "fax"}\n{"id": 1}\n{"id": ""}\n'
    )
    summary = send_records(
        read_records(path, defaults=SUPPORT),
        {"messages": "t", "annotations": "t"},
        dry_run=True,
        rejects_path=tmp_path / "r.jsonl",
    )
    assert summary.render().splitlines()[1:] == [
        f"rejected, by reason (every one in {tmp_path / 'r.jsonl'}):",
        "       2  message.id: expected a non-empty string",
        "       1  message.channel: expected one of 'email', 'chat', 'call', 'other'",
    ]


def test_dataset_records_are_numbered_and_annotations_carry_their_message():
    records = list(dataset_records("nlupp", "both", domain="hotels", folds=[0]))
    (n1, message), (n2, review) = records[:2]
    assert (n1, n2) == (1, 1)
    assert isinstance(message, Message) and review.message == message


# -- command line (dry run) --------------------------------------------------------------------


def test_send_dry_run_exits_0_with_rejects_and_prints_the_summary(tmp_path, capsys):
    path = write(tmp_path, "q.csv", "id,body,channel\n1,a,chat\n2,b,fax\n")
    assert cli.main(["send", str(path), "--dataset-name", "support", "--dry-run", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("valid (dry run, nothing sent) 1 (refinery.messages: 1) in ")
    assert "       1  message.channel: expected one of 'email', 'chat', 'call', 'other'\n" in out
    assert f"note: {path} has no timestamp column: its records carry this run's start time, " in out
    assert (tmp_path / "q.csv.rejects.jsonl").exists()


def test_send_strict_exits_1_on_any_reject(tmp_path):
    path = write(tmp_path, "q.csv", "id,body,channel\n1,a,chat\n2,b,fax\n")
    assert cli.main(["send", str(path), "--dataset-name", "support", "--dry-run", "--quiet", "--strict"]) == 1


def test_send_exits_2_on_an_input_error(tmp_path, capsys):
    assert cli.main(["send", str(tmp_path / "missing.csv"), "--dry-run"]) == 2
    assert capsys.readouterr().err == f"refinery send: error: {tmp_path / 'missing.csv'}: no such file\n"


def test_send_reports_each_input_file_with_its_own_rejects_file(tmp_path, capsys):
    first = write(tmp_path, "a.jsonl", '{"id": "m-1", "timestamp": 1, "body": "a"}\n')
    second = write(tmp_path, "b.csv", "id,timestamp,body\n1,1,x\n2,1,\n")
    assert cli.main(["send", str(first), str(second), "--dataset-name", "support", "--dry-run", "--quiet"]) == 0
    first_summary, second_summary = [line for line in capsys.readouterr().out.splitlines() if line.startswith("valid")]
    assert "; rejected 0; failed 0" in first_summary and "; rejected 1; failed 0" in second_summary
    assert [json.loads(line)["row"] for line in (tmp_path / "b.csv.rejects.jsonl").read_text().splitlines()] == [2]
    assert not (tmp_path / "a.jsonl.rejects.jsonl").exists()


def test_send_needs_files_or_a_dataset(capsys):
    assert cli.main(["send", "--dry-run"]) == 2
    assert "give input files or --dataset" in capsys.readouterr().err
