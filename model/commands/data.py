"""The examples as training will use them: python -m model.data --data DIR [--feedback DIR] [--external DIR] --csv FILE.

Writes one row per example (file, positive after corrections, patient_id, split, corrected_by) through the same
code as python -m model.train and python -m tuning, and prints the split and what the corrections did.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from model.commands.cli import Parser, add_split_arguments, check_inputs, run, setup_logging, split_from_args
from model.data import EXCLUDED, Split, scan_folder

CSV_COLUMNS = ("file", "positive", "patient_id", "split", "corrected_by")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command's flags: the training commands' data flags, --external and --csv."""
    parser = Parser(prog="python -m model.data", description=__doc__)
    group = add_split_arguments(parser)
    group.add_argument("--external", type=Path, default=None, metavar="DIR",
                       help="evaluation folder (as the search's --external): corrections of its images are excluded")
    parser.add_argument("--csv", type=Path, required=True, help="where to write the examples")
    return parser.parse_args(argv)


def rows(split: Split) -> list[dict]:
    """The CSV rows: every example of each part, then the excluded corrections."""
    parts = {**split.parts(), EXCLUDED: split.excluded}
    return [{"file": str(e.path), "positive": e.label, "patient_id": e.patient_id, "split": name,
             "corrected_by": ";".join(e.corrected_by)} for name, part in parts.items() for e in part]


def main(argv: list[str] | None = None) -> int:
    """Check the folders, split, merge the corrections, write the CSV and print a summary."""
    setup_logging()
    args = parse_args(argv)
    check_inputs(args)
    evaluation = scan_folder(args.external, positive=args.positive) if args.external else []
    split = split_from_args(args, evaluation)
    written = rows(split)
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    with open(args.csv, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(written)
    print(f"wrote {len(written)} examples to {args.csv}")
    return 0

