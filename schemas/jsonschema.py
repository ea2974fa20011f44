"""JSON Schema files for every event type, generated from the types themselves.

Producers and consumers in other languages validate against ``schemas/json/*.schema.json``;
``schemas/json/topics.json`` says which file each topic's records follow, how the topic is
keyed and whether it is compacted (from the registry, `schemas.topics.TOPICS`). Regenerate after changing a type (a test fails while the files are stale)::

    python -m schemas.jsonschema            # write the files
    python -m schemas.jsonschema --check    # exit 1 if any file is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from schemas._typed import Record
from schemas.topics import STREAM_OUTPUT, STREAMS, TOPICS

__all__ = ["INDEX", "SCHEMA_DIR", "STREAM_TOPICS", "TOPIC_TYPES", "main", "rendered", "schema_file", "stale", "write"]

#: The type carried by each topic that has a `schemas` type (all but ``snapshots``).
TOPIC_TYPES: dict[str, type[Record]] = {t.name: t.record for t in TOPICS.values() if t.record is not None}
#: The topics of streams for automations (`schemas.topics.STREAMS`), listed after the registry's.
STREAM_TOPICS = (STREAMS, STREAM_OUTPUT)

SCHEMA_DIR = Path(__file__).resolve().parent / "json"
#: The index of topics: name, schema file, key, direction, compaction.
INDEX = "topics.json"


def schema_file(cls: type[Record]) -> str:
    """The name of the schema file of ``cls``.

    >>> from schemas import Message
    >>> schema_file(Message)
    'message.schema.json'
    """
    return f"{cls._root()}.schema.json"


def _index() -> dict:
    return {
        "description": "The topics of Refinery, without their prefix (REFINERY_TOPIC_PREFIX, default 'refinery.'). "
        "key 'dataset': records are keyed by their dataset; schema null: the worker's own format.",
        "topics": [
            {
                "name": t.name,
                "schema": schema_file(t.record) if t.record else None,
                "key": t.key,
                "direction": t.direction,
                "compacted": t.compacted,
            }
            for t in (*TOPICS.values(), *STREAM_TOPICS)
        ],
    }


def _json(value: object) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n"


def rendered() -> dict[str, bytes]:
    """File name -> content of every schema file and of the topic index."""
    types = [*TOPIC_TYPES.values(), *(t.record for t in STREAM_TOPICS if t.record is not None)]
    files = {schema_file(cls): _json(cls.json_schema()) for cls in types}
    files[INDEX] = _json(_index())
    return files


def stale(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of the files that are missing or differ from what the types generate."""
    return [
        name
        for name, content in rendered().items()
        if not (directory / name).exists() or (directory / name).read_bytes() != content
    ]


def write(directory: Path = SCHEMA_DIR) -> list[str]:
    """Write every file of `rendered` into ``directory``; return their names."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in rendered().items():
        (directory / name).write_bytes(content)
    return sorted(rendered())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.jsonschema", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check that the files are current")
    args = parser.parse_args(argv)
    if args.check:
        names = stale()
        for name in names:
            print(f"stale: schemas/json/{name} (run: python -m schemas.jsonschema)", file=sys.stderr)
        return 1 if names else 0
    for name in write():
        print(f"wrote schemas/json/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
