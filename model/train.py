"""`python -m model.train`: the command is model.commands.train (model/commands/train.py)."""

import sys

from model.commands.cli import run
from model.commands.train import main

if __name__ == "__main__":
    sys.exit(run(main))
