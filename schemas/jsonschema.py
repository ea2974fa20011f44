"""JSON Schema files for every event type, generated from the types themselves.

Producers and consumers in other languages validate against ``schemas/json/*.schema.json``.
Regenerate after changing a type (a test fails while the files are stale)::

    python -m schemas.jsonschema            # write the files
    python -m schemas.jsonschema --check    # exit 1 if any file is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from schemas.events import Annotation, DeadLetter, Event, Message, MetricsSnapshot, Prediction, SuggestionList

__all__ = ["TOPIC_TYPES", "SCHEMA_DIR", "rendered", "write", "stale"]

#: The type carried by each topic of DESIGN.md section 3.
TOPIC_TYPES = {
    "messages": Message,
    "annotations": Annotation,
    "events": Event,
    "predictions": Prediction,
    "metrics": MetricsSnapshot,
    "suggestions": SuggestionList,
    "deadletter": DeadLetter,
}

SCHEMA_DIR = Path(__file__).resolve().parent / "json"


def rendered() -> dict[str, bytes]:
    """File name -> content of every schema file."""
    files = {}
    for cls in TOPIC_TYPES.values():
        files[f"{cls._root()}.schema.json"] = orjson.dumps(cls.json_schema(), option=orjson.OPT_INDENT_2) + b"\n"
    return files


def stale(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of the files that are missing or differ from what the types generate."""
    return [
        name
        for name, content in rendered().items()
        if not (directory / name).exists() or (directory / name).read_bytes() != content
    ]


def write(directory: Path = SCHEMA_DIR) -> list[str]:
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
