"""The `refinery` console command: the dispatch (`agents.cli.main`) and one module per command."""

from agents.cli.main import COMMANDS, build_parser, main

__all__ = ["COMMANDS", "build_parser", "main"]
