"""Specification of the hashed featurizer (pipeline.features)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from pipeline.features import Featurizer, split_quoted, strip_signature

REPLY = """Yes, please cancel the order.

-----Original Message-----
From: Ann Smith
Sent: Monday, 3 March 2026 10:00
To: help@bank.example
Subject: Order 1234

Can you cancel my order of 40 widgets?
"""


def test_the_same_text_hashes_to_the_same_features_in_another_process_with_another_hash_seed():
    code = (
        "from pipeline.features import Featurizer; i, v = Featurizer().transform('Card?', 'Where is my new card')\n"
        "print(i.tolist(), v.round(5).tolist())"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }
    indices, values = Featurizer().transform("Card?", "Where is my new card")
    assert outputs == {f"{indices.tolist()} {values.round(5).tolist()}\n"}


def test_features_are_sorted_unique_indices_inside_the_hashed_space_with_unit_norm():
    featurizer = Featurizer(bits=10)
    indices, values = featurizer.transform("Refund", "I want a refund for the refund I asked for")
    assert np.all(np.diff(indices) > 0)
    assert indices.min() >= 0 and indices.max() == 2**10
    assert abs(float(values[:-1] @ values[:-1]) - 1.0) < 1e-5


def test_a_reply_is_split_into_the_authors_words_and_the_quoted_message_without_its_headers():
    own, quoted = split_quoted(REPLY)
    assert own == "Yes, please cancel the order."
    assert quoted == "Can you cancel my order of 40 widgets?"


def test_lines_starting_with_a_quote_mark_are_quoted_text():
    own, quoted = split_quoted("Agreed.\n> shall we meet at 10?\n> thanks")
    assert (own, quoted) == ("Agreed.", "shall we meet at 10?\nthanks")


def test_a_signature_after_a_sign_off_is_dropped():
    assert (
        strip_signature("The invoice is wrong.\n\nBest regards,\nJohn Doe\nAccounts, ACME Ltd")
        == "The invoice is wrong."
    )


def test_quoted_text_weighs_less_than_the_authors_own_words():
    indices, values = Featurizer(bigrams=False).transform(body="refund\n> invoice")
    weight = dict(zip(indices.tolist(), values.tolist()))
    own = Featurizer(bigrams=False).transform(body="refund")[0]
    quoted = Featurizer(bigrams=False).transform(body="invoice")[0]
    own_word = [i for i in own.tolist() if i in weight and i not in quoted.tolist()]
    quoted_word = [i for i in quoted.tolist() if i in weight and i not in own.tolist()]
    assert weight[own_word[0]] > weight[quoted_word[0]]


def test_a_bare_forward_keeps_the_forwarded_content():
    forward = "---------------------- Forwarded by Jeff Dasovich on 10/18/99 ----------\nTo: Kay\nSubject: gas prices\n\nGas prices in California rose again."
    with_content = Featurizer().transform(body=forward)[0]
    channel_only = Featurizer().transform(body="")[0]
    assert len(with_content) > len(channel_only) + 5


def test_text_beyond_max_chars_is_ignored():
    featurizer = Featurizer(max_chars=20)
    short = featurizer.transform(body="please close my account")
    long = featurizer.transform(body="please close my account" + " and many more words" * 10_000)
    assert np.array_equal(short[0], long[0])


def test_chosen_metadata_properties_become_features_and_others_do_not():
    chosen = Featurizer(metadata_fields=("country",))
    base = chosen.transform(body="hello", metadata={})[0]
    assert len(chosen.transform(body="hello", metadata={"country": "UK"})[0]) == len(base) + 1
    assert len(chosen.transform(body="hello", metadata={"tier": "gold"})[0]) == len(base)


def test_the_channel_is_a_feature():
    chat = Featurizer().transform(body="hello", channel="chat")[0]
    email = Featurizer().transform(body="hello", channel="email")[0]
    assert not np.array_equal(chat, email)


def test_character_ngrams_let_a_misspelt_word_share_features_with_the_right_one():
    def shared(featurizer):
        right, misspelt = featurizer.transform(body="transfer")[0], featurizer.transform(body="tranfser")[0]
        return len(set(right.tolist()) & set(misspelt.tolist()))

    assert shared(Featurizer(bigrams=False)) == 2  # the channel and the bias feature only
    assert shared(Featurizer(char_ngrams=(3, 4), bigrams=False)) > 4


def test_a_repeated_word_weighs_log_one_plus_its_count_before_the_vector_is_normalised():
    indices, values = Featurizer(bigrams=False).transform(body="refund refund please")
    once = Featurizer(bigrams=False).transform(body="please")[0]  # the word's bucket and the channel's
    weight = dict(zip(indices.tolist(), values.tolist()))
    refund = (set(indices.tolist()) - set(once.tolist())).pop()
    norm = np.sqrt(np.log1p(2.0) ** 2 + 2 * np.log1p(1.0) ** 2)  # refund twice; please and the channel once
    assert weight[refund] == np.float32(np.log1p(2.0) / norm)
    assert weight[once[0]] == weight[once[1]] == np.float32(np.log1p(1.0) / norm)


def test_the_bounded_cache_of_word_hashes_changes_no_vector(monkeypatch):
    text = "where is the card I ordered last week"
    fresh_indices, fresh_values = Featurizer().transform(body=text)
    monkeypatch.setattr("pipeline.features._CACHE_SIZE", 3)  # the cache is dropped again and again
    small = Featurizer()
    for i in range(3):
        small.transform(body=f"{text} {i}")
    indices, values = small.transform(body=text)
    assert len(small._buckets) <= 3
    assert indices.tolist() == fresh_indices.tolist() and values.tobytes() == fresh_values.tobytes()


# -- the fast paths give the plain loops' answers -------------------------------------------


def _split_quoted_plainly(body: str) -> tuple[str, str]:
    """split_quoted as first written: every regex on every line (the reference)."""
    from pipeline.features import _HEADER, _QUOTE_START

    own, quoted, in_quote = [], [], False
    for line in body.splitlines():
        if not in_quote and _QUOTE_START.match(line):
            in_quote = True
            continue
        if line.lstrip().startswith(">"):
            quoted.append(line.lstrip().lstrip("> "))
        elif in_quote:
            if not _HEADER.match(line) and not _QUOTE_START.match(line):
                quoted.append(line)
        else:
            own.append(line)
    return "\n".join(own).strip(), "\n".join(quoted).strip()


#: Lines where a first-character shortcut could go wrong: Unicode indents, the long s that
#: matches "s" case-insensitively, digits, addresses, fullwidth letters.
_LINES = [
    "From: a", "\u017fent: x", "\u017fubject: y", " \u2003-----Original Message-----", "On Mon, Bob wrote:",
    "begin forwarded message:", "_" * 12, "> quoted", "  >> deep", "a@b.com", " 12/03/2001 10:22 AM",
    "\uff112/3/01 1:22", "hello", "", "  ", "\x1cFrom: z", "\u00a0to: q", "Re: x", "fw: y", "BCC: k",
    "date : now", "ON x wrote:  ", "text with @ inside", "-- ", "--forwarded by x", "\x0bFrom: a", "\uff26rom: a",
]  # fmt: skip


def test_split_quoted_gives_the_plain_loops_answer_on_any_mix_of_tricky_lines():
    import random

    rng = random.Random(0)
    for _ in range(5000):
        body = "\n".join(rng.choice(_LINES) for _ in range(rng.randint(1, 12)))
        assert split_quoted(body) == _split_quoted_plainly(body), repr(body)


#: ASCII lines, read by split_quoted's whole-text regexes (the lines above with other characters
#: go line by line): quote marks among headers, one-token addresses, tabs and \x1f as indents.
_ASCII_LINES = [line for line in _LINES if line.isascii() and "\x0b" not in line and "\x1c" not in line] + [
    "-----Original Message-----", "earlier words", "Thanks,", "> a@b", ">a@b", " >> x > y", "\t> \tz", "From:x@y",
    "x@y ", "@a@b", "a@", "on a\twrote:", "-- Forwarded by bob", "Best regards", "--", "\x1f>q", "\x1fFrom: q",
    "12/3/2001\t10:22", "begin forwarded message now", "on and on", "to do: list", "",
]  # fmt: skip


def test_split_quoted_of_ascii_lines_gives_the_plain_loops_answer_whatever_the_line_breaks():
    import random

    rng = random.Random(3)
    for _ in range(20000):
        lines = [rng.choice(_ASCII_LINES) for _ in range(rng.randint(1, 14))]
        body = "".join(line + rng.choice(["\n", "\r\n", "\r", "\n\n"]) for line in lines[:-1]) + lines[-1]
        body += rng.choice(["", "\n", "\r\n", " "])
        own, quoted = _split_quoted_plainly(body)
        assert split_quoted(body) == (own, quoted), repr(body)
        for limit in (1, 5, 20):
            cut_own, cut_quoted = split_quoted(body, limit)
            assert cut_own == own and cut_quoted[:limit] == quoted[:limit], (repr(body), limit)
            assert bool(cut_quoted) == bool(quoted)


def _strip_signature_plainly(text: str, tail_lines: int = 8) -> str:
    """strip_signature as first written, line by line (the reference)."""
    from pipeline.features import _SIGN_OFF

    lines = text.splitlines()
    for i in range(max(1, len(lines) - tail_lines), len(lines)):
        if _SIGN_OFF.match(lines[i]):
            return "\n".join(lines[:i]).rstrip()
    return text


def test_strip_signature_gives_the_plain_loops_answer_whatever_the_line_breaks():
    import random

    rng = random.Random(4)
    lines = [*_LINES, "Thanks,", "Regards", "-- ", "Ann", "+44 20 1234", "text", ""]
    for _ in range(20000):
        chosen = [rng.choice(lines) for _ in range(rng.randint(1, 14))]
        text = "".join(line + rng.choice(["\n", "\r\n", "\r"]) for line in chosen[:-1]) + chosen[-1]
        for variant in (text, text.strip(), text + "\n"):
            assert strip_signature(variant) == _strip_signature_plainly(variant), repr(variant)
            for tail_lines in (0, 2, -1):
                assert strip_signature(variant, tail_lines) == _strip_signature_plainly(variant, tail_lines)


@pytest.mark.parametrize("long_body", [4096, 0])  # 0: every body read from its start first
def test_split_quoted_with_a_limit_gives_the_same_own_words_and_the_same_start_of_the_quoted_text(
    datasets, monkeypatch, long_body
):
    import random

    from agents.ingest.datasets import enron

    monkeypatch.setattr("pipeline.features._LONG_BODY", long_body)
    rng = random.Random(1)
    lines = [*_LINES, "-----Original Message-----", "earlier words", "more earlier words", "Thanks,"]
    bodies = ["\n".join(rng.choice(lines) for _ in range(rng.randint(1, 40))) for _ in range(3000)]
    bodies += [m.body for m, _ in enron(root=datasets)]
    for body in bodies:
        own, quoted = split_quoted(body)
        for limit in (1, 7, 30, 300, 5000):
            cut_own, cut_quoted = split_quoted(body, limit)
            assert cut_own == own and cut_quoted[:limit] == quoted[:limit], (repr(body), limit)
            assert bool(cut_quoted) == bool(quoted)
            if not own:  # a bare forward: the featurizer strips a signature off the end of the quoted text
                assert cut_quoted == quoted


def _transform_plainly(featurizer: Featurizer, subject: str, body: str, channel: str, metadata: dict | None):
    """Featurizer.transform of an email as first written (the reference): every text's words and
    pairs added to a dict one by one, then the dict made a vector."""
    own, quoted = split_quoted(body)
    own = strip_signature(own)
    if not own and quoted:
        own, quoted = strip_signature(quoted), ""
    counts: dict[int, float] = {}
    budget = featurizer.max_chars
    for text, weight in ((subject, 1.0), (own, 1.0), (quoted, featurizer.quoted_weight)):
        if not text or budget <= 0:
            continue
        text = text[:budget]
        budget -= len(text)
        featurizer._add_each(counts, text.lower(), weight)
    for bucket in featurizer._tag_buckets(channel, subject, metadata):
        counts[bucket] = counts.get(bucket, 0.0) + 1.0
    return featurizer._vector(counts)


def test_an_emails_vector_counted_by_numpy_is_the_word_by_word_vector_to_the_bit(datasets):
    from agents.ingest.datasets import enron

    featurizers = [
        Featurizer(),
        Featurizer(quoted_weight=0.3, metadata_fields=("folder",)),  # not a power of two: order matters
        Featurizer(bigrams=False, max_chars=700),  # the budget runs out inside a text
        Featurizer(bits=10, quoted_weight=0.1),  # collisions: sums of many different weights
    ]
    emails = [m for m, _ in enron(root=datasets)][::4]
    extra = [("Subject only", "", "email", None), ("", "Short line\n> quoted line", "email", None)]
    for featurizer in featurizers:
        for subject, body, channel, metadata in [(m.subject, m.body, m.channel, m.metadata) for m in emails] + extra:
            indices, values = featurizer.transform(subject, body, channel, metadata)
            plain_indices, plain_values = _transform_plainly(featurizer, subject, body, channel, metadata)
            assert indices.tobytes() == plain_indices.tobytes() and values.tobytes() == plain_values.tobytes()


def test_words_of_an_ascii_text_are_the_regexs_words(datasets):
    import random

    from agents.ingest.datasets import enron
    from pipeline.features import _WORD, _words

    rng = random.Random(2)
    alphabet = "ab'9_ -.\t\n\x0b\x1c\x7f!@'é"  # apostrophes and separators of every kind (é: the regex's path)
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(20000)]
    texts += [m.body.lower() for m, _ in enron(root=datasets)][:400]
    for text in texts:
        assert _words(text) == _WORD.findall(text), repr(text)


def test_a_long_bodys_own_words_read_from_its_start_give_the_whole_bodys_vector(monkeypatch, datasets):
    """_own_start stops reading a long body once its own words fill the budget: the vector is
    the one of the whole body, whatever follows (signatures near the end of the own words,
    blank lines, an earlier message opening right after, quoted lines, other line breaks)."""
    import random

    from agents.ingest.datasets import enron
    from pipeline import features

    rng = random.Random(5)
    own_lines = [
        "some words here",
        "more of the author's words",
        "Thanks,",
        "Regards",
        "-- ",
        "",
        "   ",
        "Ann",
        "x " * 30,
    ]
    lines = [*own_lines, "-----Original Message-----", "On Mon, Bob wrote:", "> quoted", "caf\u00e9 au lait", "From: a"]
    bodies = []
    for _ in range(6000):  # the author's lines, then any (an earlier message, quoted lines, other letters)
        chosen = [rng.choice(own_lines) for _ in range(rng.randint(0, 40))]
        chosen += [rng.choice(lines) for _ in range(rng.randint(0, 20))]
        breaks = rng.choice([["\n"], ["\r\n"], ["\n", "\r\n", "\r", "\n\n"]])
        lead = rng.choice(["", "\n\n", "  ", "\r\n", "\u2028 "])
        bodies.append(lead + "".join(line + rng.choice(breaks) for line in chosen))
    monkeypatch.setattr(features, "_LONG_BODY", 0)  # every body long enough to try
    read_from_start = 0
    for i, body in enumerate(bodies):
        featurizer = Featurizer(max_chars=rng.choice([20, 60, 150]))
        subject = rng.choice(["", "Hi", "x" * 70])
        keep = featurizer.max_chars - len(subject[: featurizer.max_chars])
        read_from_start += features._own_start(body, keep) is not None
        indices, values = featurizer.transform(subject, body, "email", None)
        plain_indices, plain_values = _transform_plainly(featurizer, subject, body, "email", None)
        assert indices.tobytes() == plain_indices.tobytes() and values.tobytes() == plain_values.tobytes(), i
    assert read_from_start > len(bodies) // 4  # the shortcut was taken often enough to be tested
    monkeypatch.setattr(features, "_LONG_BODY", 4096)
    long_emails = [m for m, _ in enron(root=datasets) if len(m.body) > 4096 + 300]
    for featurizer in (Featurizer(), Featurizer(max_chars=300)):
        for m in long_emails:
            indices, values = featurizer.transform(m.subject, m.body, m.channel, m.metadata)
            plain_indices, plain_values = _transform_plainly(featurizer, m.subject, m.body, m.channel, m.metadata)
            assert indices.tobytes() == plain_indices.tobytes() and values.tobytes() == plain_values.tobytes(), m.id
