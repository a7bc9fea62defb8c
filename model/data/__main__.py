"""`python -m model.data`: the command is model.commands.data (model/commands/data.py)."""

import sys

from model.commands.cli import run
from model.commands.data import main

if __name__ == "__main__":
    sys.exit(run(main))
