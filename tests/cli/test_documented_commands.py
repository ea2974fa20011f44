"""The `refinery send` and `refinery replay` commands that README.md and docs/ingest.md show
take the flags they use, and docs/ingest.md's examples run as written (validated, not sent)."""

from __future__ import annotations

import re
import shlex

import pytest

from agents import cli
from agents.cli.main import build_parser
from agents.settings import PROJECT_ROOT

DOCS = ("README.md", "docs/ingest.md")


def shell_blocks(name: str) -> list[str]:
    text = (PROJECT_ROOT / name).read_text(encoding="utf-8")
    return re.findall(r"```(?:sh|bash)\n(.*?)```", text, flags=re.S)


def commands(block: str) -> list[list[str]]:
    """The ``refinery send|replay`` commands of a shell block, continuation lines joined."""
    joined = block.replace("\\\n", " ")
    found = []
    for line in joined.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith(("refinery send", "refinery replay")):
            found.append(shlex.split(line)[1:])
    return found


def heredocs(block: str) -> dict[str, str]:
    """``cat > NAME <<'EOF' ... EOF``: the files a block writes."""
    return {name: body for name, body in re.findall(r"cat > (\S+) <<'EOF'\n(.*?)^EOF$", block, flags=re.S | re.M)}


DOCUMENTED = [argv for name in DOCS for block in shell_blocks(name) for argv in commands(block)]


def test_the_documents_show_send_and_replay_commands():
    assert sum(argv[0] == "send" for argv in DOCUMENTED) >= 8
    assert sum(argv[0] == "replay" for argv in DOCUMENTED) >= 3


@pytest.mark.parametrize("argv", DOCUMENTED, ids=" ".join)
def test_a_documented_command_takes_the_flags_it_shows(argv):
    build_parser().parse_args(argv)  # an unknown flag or a wrong choice exits


def test_the_ingest_examples_run_as_written(tmp_path, monkeypatch, capsys, datasets):
    monkeypatch.chdir(tmp_path)
    ran = 0
    for block in shell_blocks("docs/ingest.md"):
        for name, body in heredocs(block).items():
            (tmp_path / name).write_text(body, encoding="utf-8")
        for argv in commands(block):
            extra = ["--limit", "20"] if "--bundled" in argv else []
            assert cli.main([*argv, *extra, "--dry-run", "--quiet"]) == 0, (argv, capsys.readouterr().err)
            out = capsys.readouterr().out
            assert "rejected 0;" in out, (argv, out)
            ran += 1
    assert ran >= 8
