"""The data set loaders: the real files of ../shared/datasets as (Message, Annotation) pairs."""

from __future__ import annotations

import functools

import pytest

from agents.ingest import datasets
from schemas import Annotation, Message

pytestmark = pytest.mark.usefixtures("datasets")  # skips when the real data sets are missing


@functools.cache
def pairs(name: str, **kwargs) -> list[tuple[Message, Annotation]]:
    return list(datasets.load(name, **kwargs))


def leaf_labels(loaded) -> set[str]:
    return {label.name for _, review in loaded for label in review.labels}


# -- Banking77 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("split", "count"), [("train", 10_003), ("test", 3_080)])
def test_banking77_has_every_query_of_the_split_and_77_intents(split, count):
    loaded = pairs("banking77", split=split)
    assert len(loaded) == count
    assert len(leaf_labels(loaded)) == 77
    assert all(len(review.labels) == 1 for _, review in loaded)


def test_banking77_ids_follow_file_order_and_are_unique():
    loaded = pairs("banking77", split="train")
    assert [m.id for m, _ in loaded[:2]] == ["train-00000", "train-00001"]
    assert loaded[42][0].id == "train-00042"
    assert len({m.id for m, _ in loaded}) == len(loaded)


def test_banking77_first_message_is_the_first_row_of_the_file():
    message, review = pairs("banking77", split="train")[0]
    assert message.body == "I am still waiting on my card?"
    assert message.dataset == "banking77" and message.channel == "chat"
    assert [label.name for label in review.labels] == ["card_arrival"]


def test_banking77_timestamps_count_seconds_from_the_base_and_test_follows_train():
    train, test = pairs("banking77", split="train"), pairs("banking77", split="test")
    assert [m.timestamp for m, _ in train[:3]] == [datasets.BASE_TIMESTAMP + i for i in range(3)]
    assert test[0][0].timestamp > train[-1][0].timestamp


def test_reviews_are_labelled_by_the_dataset_at_the_time_of_their_message():
    for message, review in pairs("banking77", split="test")[:50]:
        assert (review.dataset, review.message_id, review.timestamp) == (message.dataset, message.id, message.timestamp)
        assert (review.mode, review.annotator, review.action, review.message) == ("label", "dataset", "review", None)


def test_the_review_mode_can_present_the_data_as_a_random_sample():
    _, review = next(datasets.banking77(mode="shuffle"))
    assert review.mode == "shuffle"


def test_the_dataset_name_can_be_chosen():
    message, review = next(datasets.banking77(dataset="bank-a"))
    assert message.dataset == review.dataset == "bank-a"


# -- NLU++ -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("domain", "count", "labels"), [("banking", 2_071, 48), ("hotels", 1_009, 40)])
def test_nlupp_has_every_utterance_of_the_domain_and_its_intents(domain, count, labels):
    loaded = pairs("nlupp", domain=domain)
    assert len(loaded) == count
    assert len(leaf_labels(loaded)) == labels
    assert {m.dataset for m, _ in loaded} == {f"nlupp-{domain}"}


@pytest.mark.parametrize(("domain", "share"), [("banking", 0.69), ("hotels", 0.57)])
def test_nlupp_is_multi_label(domain, share):
    loaded = pairs("nlupp", domain=domain)
    multi = sum(len(review.labels) >= 2 for _, review in loaded) / len(loaded)
    assert multi == pytest.approx(share, abs=0.005)


def test_nlupp_utterances_without_intents_are_reviews_where_none_apply():
    empty = [review for _, review in pairs("nlupp", domain="banking") if not review.labels]
    assert len(empty) == 88
    assert all(review.action == "review" for review in empty)


def test_nlupp_ids_name_domain_fold_and_position_in_the_fold():
    ids = [m.id for m, _ in pairs("nlupp", domain="banking")]
    assert ids[0] == "banking-f0-0"
    assert "banking-f3-17" in ids
    assert len(set(ids)) == len(ids)


def test_nlupp_reads_only_the_chosen_folds_in_the_given_order():
    loaded = list(datasets.nlupp("hotels", folds=[3, 1]))
    folds = [m.metadata["fold"] for m, _ in loaded]
    assert folds[0] == 3 and folds[-1] == 1 and set(folds) == {1, 3}
    assert [m.id for m, _ in loaded[:1]] == ["hotels-f3-0"]


def test_nlupp_slots_become_extraction_fields_spanning_their_text():
    loaded = pairs("nlupp", domain="banking")
    spans = [(m, f) for m, review in loaded for f in review.fields]
    assert len(spans) == 944
    assert all(m.body[f.start : f.end] == f.value for m, f in spans)


def test_nlupp_pins_each_intent_once_even_where_the_file_repeats_it():
    assert all(len({l.name for l in r.labels}) == len(r.labels) for _, r in pairs("nlupp", domain="banking"))


# -- Enron -------------------------------------------------------------------------------------


def test_enron_has_every_email_and_53_labels():
    loaded = pairs("enron")
    assert len(loaded) == 1_702
    assert len(leaf_labels(loaded)) == 53


def test_enron_labels_are_a_two_level_hierarchy_whose_children_imply_parents():
    loaded = pairs("enron")
    assert all(len(label.name.split(" > ")) == 2 for _, review in loaded for label in review.labels)
    _, review = loaded[0]
    parents = {label.name.split(" > ")[0] for label in review.labels}
    assert parents <= set(review.pinned_labels())
    assert "Coarse genre" in {p for _, r in loaded for p in r.pinned_labels()}


def test_enron_emails_keep_their_own_fields_and_date():
    message, review = pairs("enron")[0]
    assert message.id == "enron-10425" and message.channel == "email"
    assert message.subject == "Translation of articles"
    assert message.sender == "steven.kean@enron.com"
    assert message.to.startswith("mark.schroeder@enron.com, kenneth.lay@enron.com")
    assert message.timestamp == 940236420.0  # Mon, 18 Oct 1999 01:47:00 -0700
    assert message.metadata["folder"].startswith("\\Kenneth_Lay_Dec2000")
    assert review.message_id == "enron-10425"


def test_enron_keeps_single_annotator_labels_unless_asked_for_agreement():
    every = sum(len(r.labels) for _, r in pairs("enron"))
    agreed = sum(len(r.labels) for _, r in pairs("enron", min_annotators=2))
    assert every / 1_702 == pytest.approx(3.4, abs=0.05)
    assert agreed < every


# -- all loaders -------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "kwargs"), [("enron", {}), ("nlupp", {"domain": "hotels"})])
def test_every_pair_is_exactly_what_a_consumer_decodes(name, kwargs):
    for message, review in pairs(name, **kwargs):
        assert Message.decode(message.encode()) == message
        assert Annotation.decode(review.encode()) == review


def test_loading_twice_gives_equal_pairs():
    assert list(datasets.nlupp("hotels", folds=[0])) == list(datasets.nlupp("hotels", folds=[0]))


@pytest.mark.parametrize(
    ("name", "kwargs", "count"),
    [
        ("banking77", {}, 77),
        ("nlupp", {"domain": "banking"}, 48),
        ("nlupp", {"domain": "hotels"}, 40),
        ("enron", {}, 53),
    ],
)
def test_label_set_is_the_taxonomy_the_data_uses(name, kwargs, count):
    taxonomy = datasets.label_set(name, **kwargs)
    assert len(taxonomy) == count
    assert set(taxonomy) == leaf_labels(pairs(name, **kwargs))


def test_load_dispatches_by_name():
    assert datasets.NAMES == ("banking77", "nlupp", "enron")
    assert next(datasets.load("banking77", split="test"))[0].id == "test-00000"


def test_load_names_the_data_sets_it_knows():
    with pytest.raises(ValueError, match="dataset: expected one of 'banking77', 'nlupp', 'enron', got 'imdb'"):
        datasets.load("imdb")


def test_a_missing_folder_says_where_it_looked_and_what_to_set(tmp_path):
    with pytest.raises(datasets.DatasetMissing) as raised:
        next(datasets.enron(root=tmp_path))
    assert str(raised.value) == (
        f"Enron emails not found at {tmp_path / 'enron' / 'emails.jsonl'}: set REFINERY_DATASETS to the folder "
        "holding banking77/, nlupp/ and enron/ (default ../shared/datasets beside the project)"
    )
