"""Every module of schemas/, pipeline/ and agents/ declares its public names (STYLE.md: public
names in ``__all__``), and lists every public class and function it defines there."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import agents
import pipeline
import schemas

MODULES = sorted(
    name
    for package in (schemas, pipeline, agents)
    for name in [package.__name__]
    + [m.name for m in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}.")]
    if not name.endswith("__main__")  # running it is its only use
)


def test_every_package_is_walked():
    expected = {"schemas.events", "pipeline.refiner", "agents.worker.app", "agents.web.api", "agents.kafka.admin"}
    assert expected | {"agents.ingest.readers", "agents.cli.main"} <= set(MODULES)


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
