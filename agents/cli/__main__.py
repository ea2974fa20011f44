"""``python -m agents.cli``: the same as the `refinery` command."""

import sys

from agents.cli.main import main

__all__: list[str] = []

sys.exit(main())
