"""The snapshot format: an orjson header and raw little-endian numpy arrays. No pickle.

Snapshots cross Kafka, so restoring one must never execute code. Layout::

    b"REFINERY" | format version (uint32 LE) | header length (uint64 LE) | header (JSON)
    | array bytes ... | BLAKE2b-128 digest of everything before it

The header holds plain values and, under ``"arrays"``, each array's name, dtype, shape and
offset. Only the dtypes in ``DTYPES`` are accepted.

>>> import numpy as np
>>> blob = encode({"dataset": "d"}, {"w": np.arange(3, dtype=np.float32)})
>>> header, arrays = decode(blob)
>>> header["dataset"], arrays["w"].tolist()
('d', [0.0, 1.0, 2.0])
>>> decode(blob[:8] + (99).to_bytes(4, "little") + blob[12:])
Traceback (most recent call last):
...
ValueError: snapshot: format version 99, this engine reads version 1; rebuild the dataset's state by replaying its log
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np
import orjson

__all__ = ["MAGIC", "FORMAT_VERSION", "DTYPES", "encode", "decode", "plain_copy"]

MAGIC = b"REFINERY"
FORMAT_VERSION = 1
DTYPES = ("<f4", "<f8", "<i4", "<i8", "|b1", "|u1")
_DIGEST = 16


def encode(header: dict, arrays: dict[str, np.ndarray]) -> bytes:
    """Serialise ``header`` (JSON-able) and named arrays into snapshot bytes."""
    table, chunks, offset = [], [], 0
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
        if dtype.str not in DTYPES:
            raise TypeError(f"snapshot array {name!r}: unsupported dtype {array.dtype}")
        raw = array.astype(dtype, copy=False).tobytes()
        table.append(
            {"name": name, "dtype": dtype.str, "shape": list(array.shape), "offset": offset, "nbytes": len(raw)}
        )
        chunks.append(raw)
        offset += len(raw)
    head = orjson.dumps({**header, "arrays": table}, option=orjson.OPT_SORT_KEYS)
    body = MAGIC + struct.pack("<IQ", FORMAT_VERSION, len(head)) + head + b"".join(chunks)
    return body + hashlib.blake2b(body, digest_size=_DIGEST).digest()


def plain_copy(header: dict) -> dict:
    """A deep copy of JSON-able plain values, which `encode` turns into the same bytes.

    >>> labels = ["a"]
    >>> copied = plain_copy({"labels": labels, "t": 0.1})
    >>> labels.append("b")
    >>> copied
    {'labels': ['a'], 't': 0.1}
    """
    return orjson.loads(orjson.dumps(header))


def decode(blob: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """Parse snapshot bytes; raise ValueError saying what is wrong with them."""
    blob = bytes(blob)
    if len(blob) < len(MAGIC) + 12 + _DIGEST or not blob.startswith(MAGIC):
        raise ValueError("snapshot: not a Refinery snapshot (missing the REFINERY header)")
    version, head_length = struct.unpack_from("<IQ", blob, len(MAGIC))
    if version != FORMAT_VERSION:
        raise ValueError(
            f"snapshot: format version {version}, this engine reads version {FORMAT_VERSION}; "
            "rebuild the dataset's state by replaying its log"
        )
    body, digest = blob[:-_DIGEST], blob[-_DIGEST:]
    if hashlib.blake2b(body, digest_size=_DIGEST).digest() != digest:
        raise ValueError("snapshot: checksum mismatch (the snapshot is truncated or corrupted)")
    start = len(MAGIC) + 12
    try:
        header = orjson.loads(body[start : start + head_length])
    except orjson.JSONDecodeError as error:
        raise ValueError(f"snapshot: unreadable header ({error})") from None
    data = memoryview(body)[start + head_length :]
    arrays = {}
    for entry in header.pop("arrays"):
        if entry["dtype"] not in DTYPES:
            raise ValueError(f"snapshot: array {entry['name']!r} has unsupported dtype {entry['dtype']!r}")
        raw = data[entry["offset"] : entry["offset"] + entry["nbytes"]]
        arrays[entry["name"]] = np.frombuffer(raw, dtype=np.dtype(entry["dtype"])).reshape(entry["shape"]).copy()
    return header, arrays
