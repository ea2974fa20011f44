"""Every module of schemas/ declares its public names (STYLE.md: public names in ``__all__``)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import schemas

MODULES = ["schemas", *(f"schemas.{m.name}" for m in pkgutil.iter_modules(schemas.__path__))]


@pytest.mark.parametrize("name", MODULES)
def test_every_module_lists_its_public_classes_and_functions_in_all(name):
    module = importlib.import_module(name)
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    assert [n for n in module.__all__ if not hasattr(module, n)] == [], f"{name}.__all__ names what it lacks"
    defined_here = [
        n
        for n, value in vars(module).items()
        if not n.startswith("_")
        and n != "main"  # a command's entry point is not API
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__ == name
    ]
    assert [n for n in defined_here if n not in module.__all__] == [], f"{name}: public names missing from __all__"
