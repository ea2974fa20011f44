"""The text of recent messages, for the review queue and search.

The engine keeps features and scores, not text; a reviewer needs the subject, body, channel and
metadata. `MessageStore` holds the most recent messages of the datasets this worker owns, bounded
by count *and* by bytes of text (``REFINERY_WORKBENCH_MESSAGES``, ``REFINERY_WORKBENCH_BYTES``),
least recently seen out first. A review moves its message to the recent end, so messages in the
validation window (check and missed label) stay as long as live ones.

The worker fills it as its engine applies events (every message and every review carrying one
inline; the engine decodes each event once, for both). `backfill_events` adds what came before:
when a partition is first owned it reads the recent end of it (at most the store's count back)
with a separate group-less consumer, as the engine's range reads do, so a restart or a new
assignment shows the recent messages at once, and joining a long log costs little.

>>> from schemas import Message
>>> store = MessageStore(max_messages=2, max_bytes=1000)
>>> for i in range(3):
...     store.put(Message(dataset="d", id=f"m{i}", timestamp=i, body=f"card {i} not arrived"))
>>> store.get("d", "m0") is None, store.get("d", "m2").body  # the oldest went first
(True, 'card 2 not arrived')
>>> [m.id for m in store.search("d", "NOT ARRIVED")]  # newest first, case-insensitive
['m2', 'm1']
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable, Iterable

from agents.kafka.ranges import read_range
from agents.settings import Settings
from agents.worker.observability import log_event
from schemas import Event, Message, SchemaError

__all__ = [
    "MessageStore",
    "backfill_events",
    "decode_events",
    "search",
    "DEFAULT_MESSAGES",
    "DEFAULT_BYTES",
]

log = logging.getLogger("refinery.workbench")

DEFAULT_MESSAGES = 20_000
DEFAULT_BYTES = 64 * 1024 * 1024


def _size(message: Message) -> int:
    return len(message.subject) + len(message.body) + 64 * (1 + len(message.metadata))


class MessageStore:
    """Recent messages by ``(dataset, id)``, at most ``max_messages`` and ``max_bytes`` of text."""

    def __init__(self, max_messages: int = DEFAULT_MESSAGES, max_bytes: int = DEFAULT_BYTES) -> None:
        if max_messages < 1 or max_bytes < 1:
            raise ValueError(f"MessageStore: expected positive bounds, got {max_messages} messages, {max_bytes} bytes")
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.messages: collections.OrderedDict[tuple[str, str], Message] = collections.OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self.messages)

    def put(self, message: Message) -> None:
        """Remember ``message`` as the most recent (replacing an earlier copy)."""
        key = (message.dataset, message.id)
        old = self.messages.pop(key, None)
        if old is not None:
            self.bytes -= _size(old)
        self.messages[key] = message
        self.bytes += _size(message)
        while len(self.messages) > self.max_messages or (self.bytes > self.max_bytes and len(self.messages) > 1):
            _, dropped = self.messages.popitem(last=False)
            self.bytes -= _size(dropped)

    def touch(self, dataset: str, message_id: str) -> None:
        """Mark a message as recently used (it was just reviewed)."""
        if (dataset, message_id) in self.messages:
            self.messages.move_to_end((dataset, message_id))

    def get(self, dataset: str, message_id: str) -> Message | None:
        return self.messages.get((dataset, message_id))

    def search(self, dataset: str, query: str, limit: int = 50) -> list[Message]:
        """Messages of ``dataset`` whose subject or body contains every word of ``query`` (or the
        phrase, when quoted), case-insensitively, newest first."""
        return search(self.recent(), dataset, query, limit)

    def recent(self) -> list[Message]:
        """Every message held, newest first (a copy: search it in another thread)."""
        return list(reversed(self.messages.values()))

    def backfill(self, seen: Iterable[Message | tuple[str, str]]) -> None:
        """Remember messages seen *before* everything held (a partition's history, read when it is
        first owned): `apply`'s order among themselves, placed behind the held ones, and only as
        many as the bounds leave room for (a held message is never dropped for an older one)."""
        history = MessageStore(self.max_messages, self.max_bytes)  # its newest, in `apply`'s order
        history.apply(seen)
        for key, message in reversed(history.messages.items()):  # newest first, each to the old end
            if key in self.messages:
                continue
            size = _size(message)
            if len(self.messages) >= self.max_messages or self.bytes + size > self.max_bytes:
                break
            self.messages[key] = message
            self.messages.move_to_end(key, last=False)
            self.bytes += size

    def apply(self, seen: Iterable[Message | tuple[str, str]]) -> None:
        """Remember messages, and touch ``(dataset, id)`` pairs, as `decode_events` returns them."""
        for item in seen:
            if isinstance(item, Message):
                self.put(item)
            else:
                self.touch(*item)


def search(messages: Iterable[Message], dataset: str, query: str, limit: int = 50) -> list[Message]:
    """The first ``limit`` of ``messages`` of ``dataset`` matching ``query`` (see `MessageStore.search`)."""
    query = query.strip()
    if len(query) >= 2 and query[0] == query[-1] == '"':
        needles = [query[1:-1].casefold()]
    else:
        needles = [word.casefold() for word in query.split()]
    needles = [n for n in needles if n]
    if not needles:
        return []
    out = []
    for message in messages:
        if message.dataset != dataset:
            continue
        text = f"{message.subject}\n{message.body}".casefold()
        if all(n in text for n in needles):
            out.append(message)
            if len(out) >= limit:
                break
    return out


def decode_events(values: Iterable[bytes | None]) -> list[Message | tuple[str, str]]:
    """What raw ``events`` records tell the store: each message (a review's inline copy too), and
    ``(dataset, id)`` of each review without one. Records that do not decode are left out (the
    engine dead-letters them)."""
    out: list[Message | tuple[str, str]] = []
    for raw in values:
        try:
            event = Event.decode(raw) if raw is not None else None
        except SchemaError:
            continue
        if event is None:
            continue
        if event.message is not None:
            out.append(event.message)
        elif event.annotation.message is not None:
            out.append(event.annotation.message)
        else:
            out.append((event.annotation.dataset, event.annotation.message_id))
    return out


async def backfill_events(
    store: MessageStore,
    where: Settings | str,
    topic: str,
    owned: Callable[[], set[int]],
    *,
    poll_seconds: float = 1.0,
    stop: asyncio.Event | None = None,
) -> None:
    """Fill ``store`` with the recent end of each ``events`` partition ``owned()`` names (on the
    broker of ``where``: settings, or a plaintext bootstrap string) when it is first owned, until
    ``stop`` is set.

    New events reach the store from the engine, which decodes each once (`Outcome.seen`, through
    ``Service.seen_listeners``); what a restart or a new assignment restores from a snapshot is
    never applied again, so this reads it: at most the store's count of records back from the end,
    as older than anything the store holds (`MessageStore.backfill`). A partition lost and owned
    again is read again. Decoding runs in a thread, never on the event loop; a broker error is
    logged and the partition retried.
    """
    stop = stop or asyncio.Event()
    done: set[int] = set()
    delay = poll_seconds
    while not stop.is_set():
        wanted = set(owned())
        done &= wanted
        for partition in sorted(wanted - done):
            try:
                records = await read_range(where, topic, partition, None, None, last=store.max_messages)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log_event(log, logging.WARNING, "workbench_backfill_retry", topic=topic, error=repr(error))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                break
            values = [value for _, _, value in records]
            store.backfill(await asyncio.to_thread(decode_events, values))  # the store changes on the loop
            done.add(partition)
            delay = poll_seconds
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_seconds)
