"""`python -m model.train_gate`: the command is model.commands.train_gate (model/commands/train_gate.py)."""

import sys

from model.commands.cli import run
from model.commands.train_gate import main

if __name__ == "__main__":
    sys.exit(run(main))
