"""Hashed text features of a message: bounded memory, the same in every process.

A message becomes a sparse vector in a fixed space of ``2**bits`` dimensions. Tokens are
hashed with CRC-32 (stable across processes, unlike Python's salted ``hash``), so no
vocabulary grows with traffic. What goes in:

- words of the subject (in the text space and, separately, tagged as subject words),
- words and word pairs of the body, after the body is cleaned: quoted replies, forwarded
  headers and signatures are recognised; the author's own words count fully, quoted or
  forwarded text counts at ``quoted_weight`` (so a bare forward still has content),
- optionally, character n-grams inside words (robust to the typos of short chat lines; off by
  default in :class:`pipeline.RefinerConfig`: +1.5 points of Banking77 accuracy for ~20% more
  cost per message, bench/README.md),
- the channel and the chosen metadata properties (``key=value``; numbers in log2 buckets).

Values are ``log(1 + count) * weight``, with unit L2 norm, so a one-line chat and a long email
live on the same scale. Every vector ends with the constant feature ``2**bits`` (value 1),
which carries the model's biases: the space has ``2**bits + 1`` dimensions.

>>> f = Featurizer(bits=18, char_ngrams=(4,))
>>> indices, values = f.transform(subject="", body="Where is my card?")
>>> indices.dtype, values.dtype, len(indices) == len(values)
(dtype('int32'), dtype('float32'), True)
>>> bool(abs(float((values[:-1] ** 2).sum()) - 1.0) < 1e-5), int(indices[-1]) == 2 ** 18, float(values[-1])
(True, True, 1.0)
>>> split_quoted("Yes, go ahead.\\n\\n-----Original Message-----\\nFrom: a\\nCan we ship?")
('Yes, go ahead.', 'Can we ship?')
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import operator
import re
import zlib

import numpy as np

from pipeline.model import _distinct

__all__ = ["Featurizer", "split_quoted", "strip_signature"]

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?", re.UNICODE)
# Lines that start the earlier message in a reply or a forward.
_QUOTE_START = re.compile(
    r"^\s*(?:-{2,}\s*(?:original message|forwarded by|forwarded message)[^\n]*"
    r"|on .{0,200}wrote:\s*$"
    r"|begin forwarded message:?"
    r"|_{10,}\s*$)",
    re.IGNORECASE,
)
# Header lines inside quoted or forwarded text: they say who and when, not what.
_HEADER = re.compile(
    r"^\s*(?:from|to|cc|bcc|sent|date|subject|re|fw|fwd)\s*:.*$|^\s*\S+@\S+\s*$"
    r"|^\s*\d{1,2}/\d{1,2}/\d{2,4}\s+\d{1,2}:\d{2}.*$",
    re.IGNORECASE,
)
#: First characters (after the indent) a _QUOTE_START or a _HEADER line can have (IGNORECASE:
#: ``\u017f``, the long s, matches ``s``); a header may also be a digit or hold an ``@``.
_QUOTE_FIRST = frozenset("-oObB_")
_HEADER_FIRST = frozenset("fFtTcCbBsSdDrR\u017f")
#: Multiplier of the first word's hash in a word pair's hash.
_PAIR = 0x9E3779B1
#: Weight of one character n-gram relative to one word (a word yields many n-grams).
_GRAM_WEIGHT = 0.5
#: Words and tokens whose hashes are remembered (saves time only; words and the tagged
#: tokens ``c:``, ``s:``, ``m:`` cannot collide, a word has no colon).
_CACHE_SIZE = 200_000
#: The same lines as _QUOTE_START, _HEADER and the ``>`` mark, found in a whole ASCII text
#: whose lines are each a "\n" and what follows it (:func:`split_quoted`): ``\s`` inside a line
#: is ``[^\S\n]``, ``.`` is ``[^\n]``, and a line ends at ``$`` (MULTILINE).
_QUOTE_START_LINE = re.compile(
    r"\n[^\S\n]*(?:-{2,}[^\S\n]*(?:original message|forwarded by|forwarded message)"
    r"|on [^\n]{0,200}wrote:[^\S\n]*$"
    r"|begin forwarded message"
    r"|_{10,}[^\S\n]*$)",
    re.IGNORECASE | re.MULTILINE,
)
#: A line the quoted part drops, whole: a header or another opening (never a ``>`` line).
_DROPPED_LINE = re.compile(
    r"\n(?![^\S\n]*>)[^\S\n]*(?:"
    r"(?:from|to|cc|bcc|sent|date|subject|re|fw|fwd)[^\S\n]*:[^\n]*"
    r"|\S+@\S+[^\S\n]*$"
    r"|\d{1,2}/\d{1,2}/\d{2,4}[^\S\n]+\d{1,2}:\d{2}[^\n]*"
    r"|-{2,}[^\S\n]*(?:original message|forwarded by|forwarded message)[^\n]*"
    r"|on [^\n]{0,200}wrote:[^\S\n]*$"
    r"|begin forwarded message[^\n]*"
    r"|_{10,}[^\S\n]*$)",
    re.IGNORECASE | re.MULTILINE,
)
#: A quoted line's indent and ``>`` marks (``line.lstrip().lstrip("> ")`` keeps the rest).
_QUOTE_MARK = re.compile(r"\n[^\S\n]*>[> ]*")
#: Characters other than "\n" and "\r" at which ``str.splitlines`` breaks an ASCII text.
_OTHER_BREAKS = ("\x0b", "\x0c", "\x1c", "\x1d", "\x1e")
#: Lines at the end of the own words where :func:`strip_signature` looks for a sign-off.
_SIGNATURE_LINES = 8
#: Characters past the budget from which a body is long enough for :func:`_own_start` (and
#: :func:`split_quoted`'s reading of the start first) to pay.
_LONG_BODY = 4096
#: The start :func:`split_quoted` reads first of a long body: this many times its limit.
_START_LIMITS = 3
_LEADING_SPACE = re.compile(r"\s*")
_SIGN_OFF = re.compile(
    r"^\s*(?:--\s*|thanks|thank you|many thanks|regards|best|best regards|kind regards|"
    r"cheers|sincerely|yours|warm regards|sent from my \w+)[ ,.!]*$",
    re.IGNORECASE,
)


def split_quoted(body: str, limit: int | None = None) -> tuple[str, str]:
    """Split a body into the author's own words and the quoted or forwarded text below them.

    Lines starting with ``>`` are quoted wherever they are; the first line that opens an
    earlier message (``-----Original Message-----``, ``On ... wrote:``, ``Forwarded by``)
    starts the quoted part. Header lines (``From:``, ``Sent:``...) are dropped from it.

    With ``limit``, for a caller that reads at most ``limit`` characters of the quoted text:
    once the author's own words are complete and not empty, and the quoted text holds
    ``limit`` characters, the rest of the body is not read (the own words are the same, and so
    are the quoted text's first ``limit`` characters; a long thread costs a screenful).

    >>> body = "Yes.\\n-----Original Message-----\\n" + "earlier words\\n" * 1000
    >>> own, quoted = split_quoted(body, limit=100)
    >>> own, quoted[:100] == split_quoted(body)[1][:100], len(quoted) < 300
    ('Yes.', True, True)
    """
    if limit is not None and limit > 0 and len(body) > _LONG_BODY + _START_LIMITS * limit:
        # A long body: its start first (lines cut at a "\n", the "\r" of a cut "\r\n" left out),
        # which settles a reply whose quoted part fills the limit there.
        cut = body.find("\n", _START_LIMITS * limit)
        start = _plain_lines(body[: cut - 1] if body[cut - 1] == "\r" else body[:cut]) if cut > 0 else None
        split = None if start is None else _split_text(start, limit, start_only=True)
        if split is not None:
            return split
    text = _plain_lines(body)
    if text is None:  # other line breaks, or letters beyond ASCII: read line by line
        return _split_lines(body, limit)
    split = _split_text(text, limit)
    return _split_lines(text, limit) if split is None else split  # None: quoted lines among the own words


def _split_text(text: str, limit: int | None, start_only: bool = False) -> tuple[str, str] | None:
    """:func:`split_quoted` of an ASCII text whose only line break is "\n", read by whole-text
    regexes that take a line as the line-by-line reading does (each line is a "\n" and what
    follows it); None for quoted lines among the own words (read it line by line).

    ``start_only``: ``text`` is the start of a body, cut at a line break; the split is given
    only if these lines settle it (an earlier message opens in them after own words, and its
    quoted text reaches ``limit`` in them), else None. Each line is read on its own, so the
    lines and their first opening of an earlier message are the whole body's.
    """
    lined = "\n" + text
    start = _QUOTE_START_LINE.search(lined)
    if start is None and start_only:
        return None
    own_part = lined if start is None else lined[: start.start()]
    if ">" in own_part and _QUOTE_MARK.search(own_part):  # quoted lines among the own words (rare)
        return None
    own = own_part.strip()
    after = -1 if start is None else lined.find("\n", start.start() + 1)
    if after < 0:  # nothing opens an earlier message, or nothing follows the line that does
        return None if start_only else (own, "")
    if limit is not None and limit > 0 and own:
        # Each line is kept or dropped on its own, so the first lines' quoted text is the
        # start of the whole quoted text: read a little more than the limit (headers are
        # dropped), and all if that is short.
        cut = lined.find("\n", after + limit + limit // 4)
        if cut > 0:
            quoted = _quoted_text(lined[after:cut])
            if len(quoted) >= limit:
                return own, quoted
    return None if start_only else (own, _quoted_text(lined[after:]))


def _split_lines(body: str, limit: int | None = None) -> tuple[str, str]:
    """:func:`split_quoted`, line by line: any text."""
    own: list[str] = []
    quoted: list[str] = []
    in_quote = False
    # quoted characters (with newlines) at which to check whether the limit is reached
    check_at, length = limit or 0, 0
    # A line's first character after its indent rules most regexes out before they run (a
    # quote start begins with - o b _, a header with f t c b s d r (or the long s that matches
    # s case-insensitively), a digit, or holds an @); the answers are the same.
    for line in body.splitlines():
        stripped = line.lstrip()
        first = stripped[:1]
        starts = first != "" and first in _QUOTE_FIRST
        if not in_quote and starts and _QUOTE_START.match(line):
            in_quote = True
            continue
        if first == ">":
            kept = stripped.lstrip("> ")
        elif in_quote:
            header = first != "" and (first in _HEADER_FIRST or first.isdigit() or "@" in line)
            if (header and _HEADER.match(line)) or (starts and _QUOTE_START.match(line)):
                continue
            kept = line
        else:
            own.append(line)
            continue
        quoted.append(kept)
        if in_quote and limit is not None:  # the own words are complete
            length += len(kept) + 1
            if length >= check_at:
                mine, theirs = "\n".join(own).strip(), "\n".join(quoted).strip()
                if not mine:  # a bare forward: its end may hold the signature (see Featurizer.transform)
                    limit = None
                elif len(theirs) >= limit:  # its first limit characters stand whatever follows
                    return mine, theirs
                else:
                    check_at = length + limit
    return "\n".join(own).strip(), "\n".join(quoted).strip()


def strip_signature(text: str, tail_lines: int = 8) -> str:
    """Drop a signature: everything from a sign-off line (``Thanks,``, ``--``) in the last lines.

    >>> strip_signature("Please refund me.\\nThanks,\\nAnn Smith\\n+44 20 1234")
    'Please refund me.'
    """
    plain = _plain_lines(text)
    if plain is not None and tail_lines >= 0 and not plain.endswith("\n"):  # its lines: its "\n"-separated pieces
        # the last tail_lines lines apart, the ones before in one piece (the first line is never a sign-off)
        pieces = plain.rsplit("\n", tail_lines)
        for i in range(1, len(pieces)):
            if _SIGN_OFF.match(pieces[i]):
                return "\n".join(pieces[:i]).rstrip()
        return text
    lines = text.splitlines()
    start = max(1, len(lines) - tail_lines)
    for i in range(start, len(lines)):
        if _SIGN_OFF.match(lines[i]):
            return "\n".join(lines[:i]).rstrip()
    return text


def _own_start(body: str, keep: int) -> str | None:
    """The start of a long body's own words, when its first ``keep`` characters are those of
    ``strip_signature(split_quoted(body)[0])`` and more follow; else None (read it all).

    Read from the start of the body only: its first lines, up to the 9th line break past
    ``keep`` characters of text, must be ASCII (breaks made ``"\\n"``), hold no quoted (``>``)
    line and no line opening an earlier message, and, trailing blanks dropped, keep more than
    ``keep`` characters before their last 8 lines. Then, wherever the own words end, they
    begin with these lines (whole lines, read alike by both of :func:`split_quoted`'s readers),
    and :func:`strip_signature` cuts them no earlier than their 8th last line, which lies past
    these: the featurizer reads ``keep`` characters of them and nothing of the quoted text. A
    long thread whose author wrote more than the budget is not read to its end.

    >>> body = "Dear all,\\n" + "word " * 40 + "\\n" + "more\\n" * 12 + "-----Original Message-----\\nold"
    >>> own = _own_start(body, 100)
    >>> own[:100] == strip_signature(split_quoted(body)[0])[:100], len(own) > 100
    (True, True)
    """
    lead = _LEADING_SPACE.match(body).end()  # type: ignore[union-attr]  # \s* always matches
    cut = lead + keep + body.count("\r", lead, lead + 2 * keep)  # "\r\n" becomes one character
    for _ in range(_SIGNATURE_LINES + 1):
        cut = body.find("\n", cut + 1)
        if cut < 0:
            return None
    head = body[lead:cut]
    if not head.isascii() or any(other in head for other in _OTHER_BREAKS):
        return None
    if "\r" in head:  # "\r\n" and "\r" made "\n", as :func:`_plain_lines` does (the "\r" of the cut "\r\n" left out)
        head = (head[:-1] if head.endswith("\r") else head).replace("\r\n", "\n").replace("\r", "\n")
    lined = "\n" + head
    if _QUOTE_START_LINE.search(lined) is not None or (">" in lined and _QUOTE_MARK.search(lined) is not None):
        return None
    # The own words hold at least these lines less trailing blanks (the next line may open the
    # quoted part), so their last 8 lines are these' or later ones.
    pieces = head.rstrip().rsplit("\n", _SIGNATURE_LINES)
    if len(pieces) <= _SIGNATURE_LINES or len(pieces[0].rstrip()) <= keep:
        return None
    return head


def _plain_lines(text: str) -> str | None:
    """``text`` with ``"\\n"`` its only line break (``"\\r\\n"`` and ``"\\r"`` made ``"\\n"``), if
    it is ASCII and has no other character ``str.splitlines`` breaks at; else None. Its lines are
    then ``text.split("\\n")`` (less a last empty one), the same as ``text.splitlines()``.

    >>> _plain_lines("a\\r\\nb\\rc\\nd"), _plain_lines("a\\x0cb"), _plain_lines("caf\\u00e9")
    ('a\\nb\\nc\\nd', None, None)
    """
    if not text.isascii():
        return None
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    for other in _OTHER_BREAKS:
        if other in text:
            return None
    return text


def _quoted_text(lines: str) -> str:
    """The quoted text of ``lines`` (ASCII, each a ``"\\n"`` and its text) that follow the
    line opening an earlier message: header lines and further openings dropped, ``>`` marks
    taken off, stripped; what :func:`_split_lines` keeps of them."""
    return _QUOTE_MARK.sub("\n", _DROPPED_LINE.sub("", lines)).strip()


@dataclasses.dataclass(frozen=True)
class Featurizer:
    """Turns a message's subject, body, channel and metadata into a hashed sparse vector.

    Parameters
    ----------
    bits
        The feature space has ``2**bits`` dimensions (the model's memory grows with it).
    char_ngrams
        Lengths of the character n-grams taken inside words (``()`` for none).
    bigrams
        Whether word pairs are features.
    quoted_weight
        Weight of quoted or forwarded text relative to the author's own words.
    max_chars
        Text beyond this many characters (after cleaning) is ignored: bounds the cost of
        very long emails.
    metadata_fields
        Metadata properties that become features.
    """

    bits: int = 17
    char_ngrams: tuple[int, ...] = ()
    bigrams: bool = True
    quoted_weight: float = 0.5
    max_chars: int = 5000
    metadata_fields: tuple[str, ...] = ()

    _cache: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)
    #: word -> its bucket, and word -> its share of a word pair's bucket (:meth:`_text_buckets`)
    _buckets: dict = dataclasses.field(init=False, compare=False, repr=False)
    _pair_parts: dict = dataclasses.field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        mask = (1 << self.bits) - 1
        object.__setattr__(self, "_buckets", _WordCodes(1, mask))
        object.__setattr__(self, "_pair_parts", _WordCodes(_PAIR, mask))

    def transform(
        self, subject: str = "", body: str = "", channel: str = "other", metadata: dict | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The sparse vector of one message: sorted unique ``indices`` and their ``values``."""
        counts: dict[int, float] = {}
        keep = self.max_chars - len(subject[: self.max_chars])  # characters of the body the budget leaves
        if len(body) > _LONG_BODY + keep and (start := _own_start(body, keep)) is not None:
            own, quoted = start, ""  # a long body whose own words alone fill the budget (read no further)
        elif "\n" in body or ">" in body:
            own, quoted = split_quoted(body, self.max_chars)
            own = strip_signature(own)
            if not own and quoted:  # a bare forward: its content is the message
                own, quoted = strip_signature(quoted), ""
        else:  # one line (a chat message): nothing quoted, no signature block
            own, quoted = body, ""
        if not subject and not quoted and len(own) <= self.max_chars:  # the common short case
            if not self.char_ngrams:  # every feature weighs 1: count buckets, no per-word bookkeeping
                return self._unweighted(self._text_buckets(own.lower()), channel, metadata)
            self._add_each(counts, own.lower(), 1.0)
        else:
            budget = self.max_chars
            parts = []
            for text, weight in ((subject, 1.0), (own, 1.0), (quoted, self.quoted_weight)):
                if not text or budget <= 0:
                    continue
                text = text[:budget]
                budget -= len(text)
                parts.append((text.lower(), weight))
            if not self.char_ngrams:  # words and pairs only (an email): counted by numpy, one pass
                return self._counted(parts, self._tag_buckets(channel, subject, metadata))
            for text, weight in parts:
                self._add_each(counts, text, weight)
        for bucket in self._tag_buckets(channel, subject, metadata):
            counts[bucket] = counts.get(bucket, 0.0) + 1.0
        return self._vector(counts)

    def _vector(self, counts: dict[int, float]) -> tuple[np.ndarray, np.ndarray]:
        """Sorted indices and unit-norm ``log(1 + count)`` values, the bias feature last."""
        keys = sorted(counts)
        logs = list(map(math.log1p, map(counts.__getitem__, keys)))
        norm = math.sqrt(sum(map(operator.mul, logs, logs)))  # summed in key order, as ever
        scale = 1.0 / norm if norm > 0 else 1.0
        values = [v * scale for v in logs]
        keys.append(1 << self.bits)  # the constant bias feature, last index of the space (see pipeline.model)
        values.append(1.0)
        return np.array(keys, dtype=np.int32), np.array(values, dtype=np.float32)

    def _counted(self, parts: list[tuple[str, float]], tags: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`transform`'s vector of weighted texts and tag buckets, words and word pairs only:
        the numbers :meth:`_add_each` then :meth:`_vector` give, to the bit, with the per-token
        work in numpy (long emails spent most of their time counting token by token).

        When every weight is a multiple of 0.5 (the defaults: 1 and 0.5), each feature's count
        is ``k / 2`` exactly whatever the order of the additions: a text of weight ``w`` enters
        ``2 w`` times, one sort brings each feature's entries together, and the length of its
        run is ``k``. Other weights are summed in the same order as the dict path adds them
        (texts in turn, words then pairs, tags last; ``np.bincount`` adds in input order). In
        both, ``log1p`` is Python's and the squares are summed by Python's ``sum`` in key order.
        """
        words = [_words(text) for text, _ in parts]
        total = sum(map(len, words))
        codes = np.fromiter(map(self._buckets.__getitem__, itertools.chain.from_iterable(words)), np.int64, total)
        pieces, weights, first = [], [], 0
        if self.bigrams:  # the pair's hash ((first * _PAIR) ^ second) & mask, from the masked codes:
            # the low bits of a product depend only on the low bits of its factors
            pairs = codes * _PAIR
            pairs &= (1 << self.bits) - 1
            pairs[:-1] ^= codes[1:]  # pair i: words i and i + 1 (the last word's entry is no pair)
        for group, (_, weight) in zip(words, parts):  # each text's words, then its pairs
            last = first + len(group)
            pieces.append(codes[first:last])
            weights.append(weight)
            if self.bigrams and len(group) > 1:
                pieces.append(pairs[first : last - 1])
                weights.append(weight)
            first = last
        pieces.append(np.array(tags, dtype=np.int64))
        weights.append(1.0)
        halves = [_HALVES.get(weight, 0) for weight in weights]
        if all(halves) and 2 * len(codes) * max(halves) + 2 * len(tags) < len(_LOG1P_HALVES):
            # counted in halves: each piece entered 2 w times, the runs of the sorted keys
            ordered = np.sort(np.concatenate([piece for piece, k in zip(pieces, halves) for _ in range(k)]))
            ends = np.empty(len(ordered) + 1, dtype=bool)
            ends[0] = ends[-1] = True
            np.not_equal(ordered[1:], ordered[:-1], out=ends[1:-1])
            starts = np.flatnonzero(ends)  # each feature's first entry, and the end
            features = ordered[starts[:-1]]
            runs = starts[1:] - starts[:-1]
            logs, squares = _LOG1P_HALVES[runs], _LOG1P_HALVES_SQUARED[runs]
        else:
            keys = np.concatenate(pieces)
            features, where, _, _ = _distinct(keys)  # distinct keys in order, each key's position among them
            lengths = [len(piece) for piece in pieces]
            counts = np.bincount(where, weights=np.repeat(weights, lengths), minlength=len(features))
            logs = _log1p(counts)
            squares = logs * logs
        # Summed one after the other in key order, as Python's sum() of floats does up to 3.11
        # (add.accumulate is sequential; add.reduce is pairwise): the same norm to the bit.
        norm = math.sqrt(float(np.cumsum(squares)[-1])) if len(squares) else 0.0
        values = np.empty(len(features) + 1, dtype=np.float32)
        np.multiply(logs, 1.0 / norm if norm > 0 else 1.0, out=values[:-1])  # in float64, then rounded once
        values[-1] = 1.0
        indices = np.empty(len(features) + 1, dtype=np.int32)
        indices[:-1] = features
        indices[-1] = 1 << self.bits  # the constant bias feature, last index of the space
        return indices, values

    def _unweighted(self, buckets: list[int], channel: str, metadata: dict | None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`transform`'s vector when every feature weighs 1: the same numbers as
        :meth:`_vector`, with the values of a vector of distinct features computed once per length."""
        buckets.extend(self._tag_buckets(channel, "", metadata))
        distinct = set(buckets)
        if len(distinct) < len(buckets):  # some feature occurs twice
            counts: dict[int, float] = {}
            get = counts.get
            for bucket in buckets:
                counts[bucket] = get(bucket, 0.0) + 1.0
            return self._vector(counts)
        keys = sorted(distinct)
        keys.append(1 << self.bits)
        return np.array(keys, dtype=np.int32), _distinct_values(len(distinct)).copy()

    def _text_buckets(self, text: str) -> list[int]:
        """The buckets of a text's words and word pairs (no character n-grams), repeats kept."""
        words = _words(text)
        buckets = [*map(self._buckets.__getitem__, words)]
        if self.bigrams and len(words) > 1:
            # _add_each's ((first * _PAIR) ^ second) & mask, split as the mask distributes over the xor
            parts = [*map(self._pair_parts.__getitem__, words)]
            return buckets + [part ^ bucket for part, bucket in zip(parts, buckets[1:])]
        return buckets

    def _tag_buckets(self, channel: str, subject: str, metadata: dict | None) -> list[int]:
        """Buckets of the tagged tokens: channel, subject words, chosen metadata (hashed as words
        are: a tagged token has a colon, a word none, so they share the word cache)."""
        if not subject and not (metadata and self.metadata_fields):  # the channel alone (most messages)
            return [self._buckets["c:" + channel]]
        extra = ["c:" + channel]
        if subject:
            extra += ["s:" + word for word in _words(subject[: self.max_chars].lower())]  # bounded: issue 13
        if metadata and self.metadata_fields:
            extra.extend(f"m:{key}={_bucket(metadata[key])}" for key in self.metadata_fields if key in metadata)
        return list(map(self._buckets.__getitem__, extra))

    def _add_each(self, counts: dict[int, float], text: str, weight: float) -> None:
        """Add a text's words, character n-grams and word pairs to ``counts``, one by one."""
        cache, get, mask = self._cache, counts.get, (1 << self.bits) - 1
        hashes: list[int] = []
        remember = hashes.append
        for word in _words(text):
            entry = cache.get(word)
            if entry is None:
                entry = self._word(word)
            word_hash, bucket, grams = entry
            remember(word_hash)
            counts[bucket] = get(bucket, 0.0) + weight
            for gram, share in grams:
                counts[gram] = get(gram, 0.0) + share * weight
        if self.bigrams:
            for first, second in zip(hashes, hashes[1:]):
                bucket = ((first * _PAIR) ^ second) & mask
                counts[bucket] = get(bucket, 0.0) + weight

    @property
    def _mask(self) -> int:
        return (1 << self.bits) - 1

    def _word(self, word: str) -> tuple[int, int, tuple[tuple[int, float], ...]]:
        """A word's hash, its bucket and its character n-gram buckets with their weights (cached)."""
        mask = self._mask
        grams: dict[int, float] = {}
        padded = f"<{word}>"
        for n in self.char_ngrams:
            for i in range(len(padded) - n + 1):
                bucket = zlib.crc32(("#" + padded[i : i + n]).encode("utf-8")) & mask
                grams[bucket] = grams.get(bucket, 0.0) + _GRAM_WEIGHT
        word_hash = zlib.crc32(word.encode("utf-8"))
        entry = (word_hash, word_hash & mask, tuple(grams.items()))
        if len(self._cache) >= _CACHE_SIZE:  # the cache only saves time: dropping it changes no result
            self._cache.clear()
        self._cache[word] = entry
        return entry


class _WordCodes(dict):
    """word -> ``(CRC-32 of its UTF-8 bytes * multiplier) & mask``, computed on first use; at
    most ``_CACHE_SIZE`` words (the cache only saves time: dropping it changes no result)."""

    def __init__(self, multiplier: int, mask: int) -> None:
        super().__init__()
        self.multiplier, self.mask = multiplier, mask

    def __missing__(self, word: str) -> int:
        if len(self) >= _CACHE_SIZE:
            self.clear()
        code = self[word] = (zlib.crc32(word.encode("utf-8")) * self.multiplier) & self.mask
        return code


#: ASCII bytes that can be part of a word (letters, digits, the apostrophe) kept, others a space.
_ASCII_WORD_BYTES = bytes(b if chr(b).isalnum() or b == ord("'") else ord(" ") for b in range(256))


def _words(text: str) -> list[str]:
    """``_WORD.findall(text)``, for an ASCII text (most emails) without the regex: separators
    become spaces in C (``bytes.translate``), ``split`` cuts there. ``_WORD`` joins two words
    around one apostrophe: an apostrophe without a letter or digit on each side becomes a space
    too, and only if a piece still holds two (``rock'n'roll``) do the pieces with one go through
    the regex. ~40% less time than ``findall`` on Enron.

    >>> _words("don't-stop_me 'now' rock'n'roll 42x") == _WORD.findall("don't-stop_me 'now' rock'n'roll 42x")
    True
    >>> _words("it's 'quoted' o'clock '90s")
    ["it's", 'quoted', "o'clock", '90s']
    """
    if not text.isascii():
        return _WORD.findall(text)
    spaced = text.encode("ascii").translate(_ASCII_WORD_BYTES).decode("ascii")
    if "'" not in spaced:
        return spaced.split()
    spaced = _LONE_APOSTROPHE.sub(" ", spaced)
    words = spaced.split()
    if _APOSTROPHE_CHAIN.search(spaced) is None:  # each piece is a word, or two joined by an apostrophe
        return words
    out: list[str] = []
    keep, split = out.append, out.extend
    for word in words:
        if "'" in word:
            split(_WORD.findall(word))
        else:
            keep(word)
    return out


#: An apostrophe that joins nothing: no letter or digit before it, or none after it.
_LONE_APOSTROPHE = re.compile(r"'(?:(?<![^\W_]')|(?![^\W_]))")
#: Two apostrophes in one piece of letters, digits and apostrophes (after _LONE_APOSTROPHE).
_APOSTROPHE_CHAIN = re.compile(r"'[^\W_]+'")


#: ``math.log1p(k / 2)`` for the counts a text reaches with weights 1 and 0.5 (the defaults).
_LOG1P_HALVES = np.array([math.log1p(k / 2) for k in range(8192)])
#: Their squares (the same products as ``logs * logs``).
_LOG1P_HALVES_SQUARED = _LOG1P_HALVES * _LOG1P_HALVES
#: A weight that is a small multiple of 0.5 -> the number of halves in it (:meth:`Featurizer._counted`).
_HALVES = {k / 2: k for k in range(1, 5)}


def _log1p(counts: np.ndarray) -> np.ndarray:
    """``math.log1p`` of each count (numpy's own log1p may differ from the C library's in the
    last bit), from a table when every count is a multiple of 0.5 (the default weights).

    >>> _log1p(np.array([1.0, 2.5, 0.3])).tolist() == [math.log1p(1.0), math.log1p(2.5), math.log1p(0.3)]
    True
    """
    halves = counts * 2.0
    steps = halves.astype(np.int64)
    if len(counts) and (steps == halves).all() and steps.max() < len(_LOG1P_HALVES) and steps.min() >= 0:
        return _LOG1P_HALVES[steps]
    levels, level = np.unique(counts, return_inverse=True)  # few distinct counts: each computed once
    return np.array(list(map(math.log1p, levels.tolist())))[level]


@functools.lru_cache(maxsize=256)
def _distinct_values(n: int) -> np.ndarray:
    """The values of ``n`` distinct features counted once and the bias, as :meth:`Featurizer._vector`
    computes them (the same float operations in the same order); read-only, callers copy it."""
    values = Featurizer._vector(Featurizer(bits=0), dict.fromkeys(range(n), 1.0))[1]
    values.flags.writeable = False
    return values


def _bucket(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    return f"{sign}2^{int(math.floor(math.log2(abs(value))))}"
