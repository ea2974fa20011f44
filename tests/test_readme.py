"""The README's examples run as written."""

from __future__ import annotations

import doctest

from agents.settings import PROJECT_ROOT


def test_readme_python_examples_run():
    failures, tried = doctest.testfile(
        str(PROJECT_ROOT / "README.md"), module_relative=False, optionflags=doctest.ELLIPSIS
    )
    assert tried > 0 and failures == 0


def test_readme_names_the_test_command_that_ci_runs():
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    ci = (PROJECT_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "bash scripts/test" in readme and "bash scripts/test" in ci
