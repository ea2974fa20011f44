"""One documented list of settings: the table of docs/configuration.md and the code agree.

Every ``REFINERY_*`` variable named under ``agents/`` has exactly one row; every row names a
variable the code reads, a field that exists, and the code's default.
"""

from __future__ import annotations

import dataclasses
import doctest
import json
import re

import pytest

from agents.settings import PROJECT_ROOT, Settings
from agents.worker.app import WorkerOptions

CONFIGURATION = PROJECT_ROOT / "docs" / "configuration.md"
VARIABLE = re.compile(r"\bREFINERY_[A-Z][A-Z_]*[A-Z]\b")
READERS = {"Settings": Settings, "WorkerOptions": WorkerOptions}


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
    others = [str(path.relative_to(PROJECT_ROOT)) for path in documents
              if path != CONFIGURATION and re.search(r"^\| `REFINERY_", path.read_text(encoding="utf-8"), flags=re.MULTILINE)]

    assert not others, f"link to docs/configuration.md instead of a table of variables in: {others}"


def _reader(row: dict[str, str]):
    """``(class, field)`` a row's "read by" names, or None for a function such as ``datasets_dir``."""
    match = re.fullmatch(r"`(\w+)\.(\w+)`", row["read by"])
    if not match:
        return None
    cls = READERS.get(match.group(1))
    assert cls is not None, f"{row['variable']}: read by unknown class {match.group(1)}"
    return cls, match.group(2)


def test_every_field_named_as_reader_exists():
    for row in _table_rows():
        reader = _reader(row)
        if reader is None:
            assert row["read by"] == "`datasets_dir`", row
            continue
        cls, field = reader
        assert field in {f.name for f in dataclasses.fields(cls)}, f"{row['variable']}: {cls.__name__} has no field {field!r}"


def test_the_variable_sets_the_field_the_table_names():
    for row in _table_rows():
        reader = _reader(row)
        if reader is None or row["variable"] in ("REFINERY_ENGINE_CONFIG",):
            continue
        cls, field = reader
        kind = {f.name: f.type for f in dataclasses.fields(cls)}[field]
        value = "7" if any(t in str(kind) for t in ("int", "float")) else "/tmp/x" if "Path" in str(kind) else "x.y"
        configured = cls.from_env({row["variable"]: value})
        assert str(getattr(configured, field)) in (value, "7.0"), f"{row['variable']} does not set {cls.__name__}.{field}"


@pytest.mark.parametrize("row", [r for r in _table_rows() if _reader(r)], ids=lambda r: r["variable"])
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
