"""docs/architecture.md names modules, classes and functions; every one of them must exist."""

from __future__ import annotations

import importlib
import re

import pytest

from agents.settings import PROJECT_ROOT

DOC = PROJECT_ROOT / "docs" / "architecture.md"
PACKAGES = ("schemas", "pipeline", "agents")


def _dotted_names() -> list[str]:
    names = re.findall(r"`((?:{})(?:\.\w+)*)`".format("|".join(PACKAGES)), DOC.read_text())
    return sorted(set(names))


def _resolve(name: str) -> object:
    """The module, or the attribute of the longest importable module prefix, that ``name`` names."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            found = getattr(found, attribute)  # AttributeError: the doc names something gone
        return found
    raise ModuleNotFoundError(name)


def test_the_architecture_page_names_many_things():
    assert len(_dotted_names()) >= 30


@pytest.mark.parametrize("name", _dotted_names())
def test_every_name_in_the_architecture_page_exists(name):
    _resolve(name)


def test_a_name_that_does_not_exist_is_caught():
    with pytest.raises((AttributeError, ModuleNotFoundError)):
        _resolve("agents.worker.service.Service.no_such_verb")
    with pytest.raises((AttributeError, ModuleNotFoundError)):
        _resolve("agents.nowhere")
