"""One documented list of settings: the table of docs/configuration.md and the code agree.

Every ``REFINERY_*`` variable named under ``agents/`` has exactly one row; every row names a
variable the code reads, what reads it (a class field or a function defined under ``agents/``,
found wherever it lives), and, for a field, the code's default.
"""

from __future__ import annotations

import dataclasses
import doctest
import importlib
import json
import re
from pathlib import PurePath

import pytest

from agents.settings import PROJECT_ROOT

CONFIGURATION = PROJECT_ROOT / "docs" / "configuration.md"
VARIABLE = re.compile(r"\bREFINERY_[A-Z][A-Z_]*[A-Z]\b")


def _variables_in_code() -> dict[str, list[str]]:
    """``{variable: [files naming it]}`` over every module of ``agents/``."""
    found: dict[str, list[str]] = {}
    for path in sorted((PROJECT_ROOT / "agents").rglob("*.py")):
        for name in set(VARIABLE.findall(path.read_text(encoding="utf-8"))):
            found.setdefault(name, []).append(str(path.relative_to(PROJECT_ROOT)))
    return found


def _table_rows() -> list[dict[str, str]]:
    """The rows of the variables table: ``{"variable", "default", "read by", "meaning"}``."""
    rows = []
    for line in CONFIGURATION.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\| `(REFINERY_[A-Z_]+)` \| (.*?) \| (.*?) \| (.*) \|$", line)
        if match:
            rows.append(dict(zip(("variable", "default", "read by", "meaning"), match.groups())))
    return rows


def test_every_variable_the_code_reads_is_in_the_table():
    documented = {row["variable"] for row in _table_rows()}
    missing = {name: files for name, files in _variables_in_code().items() if name not in documented}

    assert not missing, f"add a row to docs/configuration.md for: {missing}"


def test_every_variable_in_the_table_is_read_by_the_code():
    in_code = _variables_in_code()
    stale = [row["variable"] for row in _table_rows() if row["variable"] not in in_code]

    assert not stale, f"docs/configuration.md documents variables nothing in agents/ reads: {stale}"


def test_each_variable_has_exactly_one_row():
    names = [row["variable"] for row in _table_rows()]

    assert len(names) == len(set(names)), [name for name in names if names.count(name) > 1]


def test_no_other_document_keeps_its_own_table_of_variables():
    documents = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
    others = [
        str(path.relative_to(PROJECT_ROOT))
        for path in documents
        if path != CONFIGURATION and re.search(r"^\| `REFINERY_", path.read_text(encoding="utf-8"), flags=re.MULTILINE)
    ]

    assert not others, f"link to docs/configuration.md instead of a table of variables in: {others}"


def _defined(name: str):
    """The class or function ``name`` as defined (``class name`` / ``def name``) in a module of ``agents/``."""
    definition = re.compile(rf"^(?:class|def) {name}\b", flags=re.MULTILINE)
    for path in sorted((PROJECT_ROOT / "agents").rglob("*.py")):
        if definition.search(path.read_text(encoding="utf-8")):
            module = ".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
            return getattr(importlib.import_module(module), name)
    raise AssertionError(f"docs/configuration.md: nothing under agents/ defines {name!r}")


def _reader(row: dict[str, str]) -> tuple[object, str | None]:
    """What a row's "read by" names: ``(class, field)`` for `Class.field`, ``(function, None)``."""
    match = re.fullmatch(r"`(\w+)(?:\.(\w+))?`", row["read by"])
    assert match, f"{row['variable']}: 'read by' must be `Class.field` or `function`, got {row['read by']!r}"
    return _defined(match.group(1)), match.group(2)


def _field_rows() -> list[dict[str, str]]:
    """The rows read by a class field (`Class.field`); resolved by the tests, not at collection."""
    return [row for row in _table_rows() if re.fullmatch(r"`\w+\.\w+`", row["read by"])]


def test_every_reader_named_exists():
    for row in _table_rows():
        reader, field = _reader(row)
        if field is None:
            assert callable(reader), row
        else:
            fields = {f.name for f in dataclasses.fields(reader)}
            assert field in fields, f"{row['variable']}: {reader.__name__} has no field {field!r}"


#: Values of string settings that pass start-up validation (`Settings.validate`).
VALID_TEXT = {
    "REFINERY_KAFKA_BOOTSTRAP": "kafka.example:9092",
    "REFINERY_TOPIC_PREFIX": "x.",
    "REFINERY_WORKER_ROLE": "engine",
}


@pytest.mark.parametrize("row", _field_rows(), ids=lambda r: r["variable"])
def test_the_variable_sets_the_field_the_table_names(row):
    cls, field = _reader(row)
    kind = str({f.name: f.type for f in dataclasses.fields(cls)}[field])
    default = getattr(cls(), field)
    if "Mapping" in kind or "dict" in kind:
        value, expected = '{"feature_bits": 12}', {"feature_bits": 12}
    elif kind == "bool":  # the other value than the default, as the variable spells it
        value, expected = ("false", False) if default else ("1", True)
    elif "int" in kind or "float" in kind:  # a value other than the default, within the allowed range
        number = default * 2 if isinstance(default, float) else default - 1 if (default or 0) > 8 else 7
        value, expected = str(number), number
    else:
        value = expected = VALID_TEXT.get(row["variable"], "/tmp/x")

    configured = getattr(cls.from_env({row["variable"]: value}), field)

    assert configured == expected if not isinstance(configured, (str, PurePath)) else str(configured) == expected, (
        f"{row['variable']}={value} gives {cls.__name__}.{field} = {configured!r}"
    )


@pytest.mark.parametrize("row", _field_rows(), ids=lambda r: r["variable"])
def test_the_documented_default_is_the_code_default(row):
    cls, field = _reader(row)
    actual = getattr(cls(), field)
    documented = row["default"]
    if documented == "unset":
        assert actual is None
    elif re.fullmatch(r"`[^`<]*`", documented):  # a literal value; `<...>` and prose are derived defaults
        literal = documented.strip("`")
        if isinstance(actual, (int, float)):
            assert float(literal) == actual
        elif isinstance(actual, dict):
            assert json.loads(literal) == actual
        else:
            assert literal == str(actual)


def test_the_python_example_of_the_page_runs():
    failures, tried = doctest.testfile(str(CONFIGURATION), module_relative=False)
    assert tried > 0 and failures == 0
