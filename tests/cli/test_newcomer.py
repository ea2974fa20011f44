"""The CLI a newcomer meets (issue 8), tried as one would: a small labelled CSV, ``text,labels``.

Each test is named for what went wrong before: it fails on the old behaviour.
"""

from __future__ import annotations

import re

import pytest

from agents import cli
from agents.cli import options
from agents.cli.main import build_parser

CARD = ["my card has not arrived", "where is my new card", "card still not delivered", "when will my card come"]
REFUND = ["I want a refund", "please refund my money", "refund for the double charge", "give me my money back"]


@pytest.fixture
def my_csv(tmp_path):
    """Ten rows of ``text,labels``, what a newcomer tries first."""
    rows = ["text,labels"] + [
        f"{(CARD if i % 2 else REFUND)[i % 4]} {i},{'Card' if i % 2 else 'Refund'}" for i in range(10)
    ]
    path = tmp_path / "my.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


# -- send: naming the dataset ------------------------------------------------------------------


def test_send_without_a_dataset_says_which_flag_names_it_and_rejects_nothing(my_csv, capsys):
    assert cli.main(["send", str(my_csv), "--dry-run", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "which dataset do these records belong to? Name it with --dataset NAME" in err
    assert not (my_csv.parent / "my.csv.rejects.jsonl").exists()


def test_send_dataset_names_the_target_dataset(my_csv, capsys):
    assert cli.main(["send", str(my_csv), "--dataset", "mydata", "--dry-run", "--quiet"]) == 0
    assert capsys.readouterr().out.startswith("valid (dry run, nothing sent) 20 ")


def test_json_records_without_a_dataset_get_a_note_naming_the_flag(tmp_path, capsys):
    path = tmp_path / "m.jsonl"
    path.write_text('{"id": "m-1", "timestamp": 1, "body": "a"}\n')
    assert cli.main(["send", str(path), "--dry-run", "--quiet"]) == 0
    assert "note: some records name no dataset: name it with --dataset NAME" in capsys.readouterr().out


# -- --dataset names, --bundled picks ----------------------------------------------------------


def test_send_dataset_with_a_bundled_name_and_no_file_points_to_bundled(capsys):
    assert cli.main(["send", "--dataset", "banking77"]) == 2
    assert "for the bundled data set, use --bundled banking77" in capsys.readouterr().err


def test_replay_dataset_with_a_bundled_name_and_no_file_points_to_bundled():
    with pytest.raises(SystemExit, match="for the bundled data set, use --bundled banking77"):
        cli.main(["replay", "--dataset", "banking77"])


@pytest.mark.parametrize("command", ["send", "replay"])
def test_a_bundled_name_given_as_a_file_points_to_bundled(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    try:
        code = cli.main([command, "enron", "--dry-run"] if command == "send" else [command, "enron"])
        text = capsys.readouterr().err
    except SystemExit as stop:
        code, text = 2, str(stop)
    assert code == 2
    assert "enron: no such file (for the bundled data set, use --bundled enron)" in text


def test_demo_dataset_with_another_bundled_name_points_to_bundled(capsys):
    assert cli.main(["demo", "--dataset", "enron"]) == 2
    assert "use --bundled enron" in capsys.readouterr().err


def test_bundled_picks_the_data_set_and_dataset_renames_it(datasets, capsys):
    assert (
        cli.main(
            [
                "send",
                "--bundled",
                "nlupp",
                "--domain",
                "hotels",
                "--kind",
                "both",
                "--limit",
                "3",
                "--dataset",
                "hotel-intents",
                "--dry-run",
                "--quiet",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.startswith(
        "valid (dry run, nothing sent) 6 (refinery.annotations: 3, refinery.messages: 3)"
    )
    args = build_parser().parse_args(
        ["replay", "--bundled", "nlupp", "--domain", "hotels", "--dataset", "hotel-intents"]
    )
    assert options.bundled_kwargs(args) == {"domain": "hotels", "dataset": "hotel-intents"}


# -- a CSV of text and labels is messages and their reviews ------------------------------------


def test_send_of_a_csv_with_text_and_labels_sends_each_row_as_message_and_review(my_csv, capsys):
    assert cli.main(["send", str(my_csv), "--dataset", "mydata", "--dry-run", "--quiet"]) == 0
    assert "(refinery.annotations: 10, refinery.messages: 10)" in capsys.readouterr().out


def test_kind_both_works_for_files_not_only_bundled_sets(my_csv, capsys):
    assert (
        cli.main(["send", str(my_csv), "--dataset", "mydata", "--kind", "both", "--limit", "4", "--dry-run", "--quiet"])
        == 0
    )
    assert "(refinery.annotations: 4, refinery.messages: 4)" in capsys.readouterr().out


# -- replay: the README's example reviews something, and says why when it does not -------------


def test_replay_of_a_small_csv_with_the_readme_flags_reviews_by_default(my_csv, capsys):
    assert cli.main(["replay", str(my_csv), "--label-column", "labels", "--no-progress"]) == 0
    out = capsys.readouterr().out
    reviewed = int(re.search(r"10 messages observed, (\d+) reviewed", out).group(1))
    assert reviewed > 0
    assert "hint:" not in out


def test_replay_that_reviews_nothing_says_why_and_which_flag_to_raise(my_csv, capsys):
    assert cli.main(["replay", str(my_csv), "--review-share", "0", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "0 reviewed" in out
    assert "hint: no message was reviewed (--review-share 0 of 10 messages chose none)" in out
    assert "raise --review-share" in out


def test_replay_reads_labels_cells_by_the_same_rule_as_send(tmp_path, capsys):
    path = tmp_path / "multi.csv"
    path.write_text("text,labels\n" + "".join(f"{CARD[i % 4]} {i},Card;Urgent\n" for i in range(6)))
    assert cli.main(["replay", str(path), "--review-share", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "\nCard " in out and "\nUrgent " in out and "Card;Urgent" not in out


def test_replay_skips_invalid_rows_and_counts_them(tmp_path, capsys):
    path = tmp_path / "holes.csv"
    path.write_text("text,labels\n" + "".join(f"{CARD[i % 4]} {i},Card\n" for i in range(6)) + ",Card\n")
    assert cli.main(["replay", str(path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "6 messages observed" in out
    assert "skipped 1 invalid records: 1 x message.body: expected a subject or a body" in out


# -- errors name the flag that fixes them ------------------------------------------------------


def test_replay_of_a_csv_without_text_names_the_text_flag(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("msg,labels\nhello,A\n")
    with pytest.raises(
        SystemExit, match=r"no message text: name its column with --text-column \(the header has: msg, labels\)"
    ):
        cli.main(["replay", str(path), "--no-progress"])


def test_an_unknown_column_names_its_flag(my_csv, capsys):
    assert cli.main(["send", str(my_csv), "--dataset", "d", "--label-column", "tags", "--dry-run"]) == 2
    assert "--label-column 'tags': no such column (the header has: text, labels)" in capsys.readouterr().err


# -- one set of Kafka options ------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["send", "f.csv"], ["tail", "messages"], ["status", "d"], ["worker"], ["demo"]])
def test_every_command_that_talks_to_kafka_takes_prefix_and_bootstrap(argv):
    args = build_parser().parse_args([*argv, "--prefix", "t.", "--bootstrap", "kafka.example:9093"])
    settings = options.settings_from(args, env={})
    assert (settings.topic("messages"), settings.bootstrap) == ("t.messages", "kafka.example:9093")


def test_the_environment_applies_when_no_flag_is_given():
    args = build_parser().parse_args(["tail", "messages"])
    settings = options.settings_from(args, env={"REFINERY_TOPIC_PREFIX": "env.", "REFINERY_KAFKA_BOOTSTRAP": "h:1"})
    assert (settings.topic_prefix, settings.bootstrap) == ("env.", "h:1")
