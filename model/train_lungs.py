"""`python -m model.train_lungs`: the command is model.commands.train_lungs (model/commands/train_lungs.py)."""

import sys

from model.commands.cli import run
from model.commands.train_lungs import main

if __name__ == "__main__":
    sys.exit(run(main))
