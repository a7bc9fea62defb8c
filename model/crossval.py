"""`python -m model.crossval`: the command is model.commands.crossval (model/commands/crossval.py)."""

import sys

from model.commands.cli import run
from model.commands.crossval import main

if __name__ == "__main__":
    sys.exit(run(main))
