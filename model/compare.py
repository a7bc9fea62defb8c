"""`python -m model.compare`: the command is model.commands.compare (model/commands/compare.py)."""

import sys

from model.commands.cli import run
from model.commands.compare import main

if __name__ == "__main__":
    sys.exit(run(main))
