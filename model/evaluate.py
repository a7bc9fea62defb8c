"""`python -m model.evaluate`: the command is model.commands.evaluate (model/commands/evaluate.py)."""

import sys

from model.commands.cli import run
from model.commands.evaluate import main

if __name__ == "__main__":
    sys.exit(run(main))
