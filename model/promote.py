"""`python -m model.promote`: the command is model.commands.promote (model/commands/promote.py)."""

import sys

from model.commands.cli import run
from model.commands.promote import main

if __name__ == "__main__":
    sys.exit(run(main))
