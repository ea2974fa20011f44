"""The registry of topics (`schemas.topics`) is the one list: it matches the design, and every
other list of topics is read from it."""

from __future__ import annotations

import re

import orjson
import pytest

from agents.settings import PROJECT_ROOT, Settings
from agents.settings import TOPICS as SETTINGS_TOPICS
from schemas.jsonschema import INDEX, SCHEMA_DIR, STREAM_TOPICS, TOPIC_TYPES
from schemas.topics import TOPICS, topic

DESIGN = PROJECT_ROOT.parent / "shared" / "DESIGN.md"


def _design_table() -> dict[str, tuple[str, str]]:
    """``{topic: (key, direction)}`` from the table of DESIGN.md section 3."""
    if not DESIGN.is_file():
        pytest.skip(f"DESIGN.md not found at {DESIGN}")
    section = DESIGN.read_text(encoding="utf-8").split("## 3.", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| (\w+) \| ([^|]+) \|", section, flags=re.MULTILINE)
    return {name: (key, direction.strip()) for name, key, direction in rows}


def test_the_registry_holds_the_topics_of_the_design_in_its_order():
    assert list(TOPICS) == list(_design_table())


def test_each_topic_is_keyed_directed_and_compacted_as_the_design_says():
    for name, (key, direction) in _design_table().items():
        entry = TOPICS[name]
        assert entry.key == (None if key == "none" else key), name
        assert entry.direction == direction.split(",")[0], name
        assert entry.compacted == ("compacted" in direction), name


def test_the_settings_list_the_registry_names():
    assert SETTINGS_TOPICS == tuple(TOPICS)
    assert Settings(topic_prefix="p.").topics() == {name: f"p.{name}" for name in TOPICS}


def test_every_topic_with_a_record_type_has_a_schema_file():
    assert TOPIC_TYPES == {t.name: t.record for t in TOPICS.values() if t.record is not None}
    assert set(TOPICS) - set(TOPIC_TYPES) == {"snapshots"}


def test_the_topic_index_names_an_existing_schema_file_per_topic():
    index = orjson.loads((SCHEMA_DIR / INDEX).read_bytes())

    assert [entry["name"] for entry in index["topics"]] == [*TOPICS, *(t.name for t in STREAM_TOPICS)]
    for entry in index["topics"]:
        assert entry["schema"] is None or (SCHEMA_DIR / entry["schema"]).is_file(), entry


def test_an_unknown_topic_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="no topic 'message': the topics are messages, annotations"):
        topic("message")


def test_no_other_module_spells_out_the_list_of_topics():
    """A literal naming four or more topics is a second registry: read `schemas.topics.TOPICS`."""
    quoted = re.compile(r"""["'](""" + "|".join(TOPICS) + r""")["']""")
    literal = re.compile(r"[(\[{][^()\[\]{}]*[)\]}]", flags=re.DOTALL)
    copies = []
    for root in ("agents", "schemas"):
        for path in sorted((PROJECT_ROOT / root).rglob("*.py")):
            if path.name == "topics.py" and path.parent.name == "schemas":
                continue
            for found in literal.finditer(path.read_text(encoding="utf-8")):
                if len(set(quoted.findall(found.group()))) >= 4:
                    copies.append(f"{path.relative_to(PROJECT_ROOT)}: {found.group()[:80]}")

    assert not copies, copies
