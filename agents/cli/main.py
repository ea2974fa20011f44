"""The `refinery` console command.

Each subcommand lives in its own module, which exposes ``add_arguments(parser)`` and
``run(args) -> int``; this module only dispatches, importing the module a command needs
when it runs (so `refinery --help` does not import Faust).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from agents.settings import SettingError

__all__ = ["COMMANDS", "build_parser", "main"]

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "kafka": ("agents.cli.kafka", "fetch, start, stop or inspect the local Kafka broker; create topics"),
    "send": (
        "agents.cli.send",
        "validate messages and reviews from a file or a bundled data set and send them to Kafka",
    ),
    "replay": ("agents.cli.replay", "run a labelled data file through the engine in-process (no broker)"),
    "worker": ("agents.cli.worker", "run the streaming worker (Faust)"),
    "demo": ("agents.cli.demo", "start broker, worker and a simulated live stream with reviews"),
    "status": ("agents.cli.status", "show a dataset's rating, factors and labels"),
    "tail": ("agents.cli.tail", "print decoded events of a topic as they arrive"),
}


def _available() -> dict[str, tuple[str, str]]:
    found = {}
    for name, (module, help_text) in COMMANDS.items():
        if importlib.util.find_spec(module) is not None:
            found[name] = (module, help_text)
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refinery",
        description="Refinery: keep text classifiers on live communications accurate.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in _available().items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_module", None):
        parser.print_help()
        return 2
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except SettingError as error:  # one line naming the variable and its allowed range
        print(f"refinery {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
