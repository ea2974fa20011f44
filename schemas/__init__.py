"""The contract of Refinery: the event types of every topic, strict parsing, the JSON codec.

>>> from schemas import Message
>>> Message.decode(b'{"dataset": "d", "id": "1", "timestamp": 0, "channel": "fax"}')
Traceback (most recent call last):
...
schemas.errors.SchemaError: message.channel: expected one of 'email', 'chat', 'call', 'other', got 'fax'
"""

from schemas._typed import DEFAULT_MAX_BODY_BYTES, Record
from schemas.errors import SchemaError
from schemas.events import *  # noqa: F403
from schemas.events import __all__ as _events

__all__ = ["DEFAULT_MAX_BODY_BYTES", "Record", "SchemaError", *_events]
