"""`python -m model.predict`: the command is model.commands.predict (model/commands/predict.py)."""

import sys

from model.commands.cli import run
from model.commands.predict import main

if __name__ == "__main__":
    sys.exit(run(main))
