"""Predict files: python -m model.predict FILE_OR_FOLDER... [--model PATH] [--csv OUT].

A folder stands for every X-ray file in it and its sub-folders (the formats the app reads, by extension; hidden
files and masks/ folders left out), in sorted order. One line per file: probability of COVID-19 and the decision at the model card's threshold, or, for a file the
input gate refuses (not an adult frontal chest film), "out of scope" and why, with no probability or decision.
Files go through the network in batches, with progress on stderr. Unusable files are reported on stderr and
skipped; the exit status is 1 if any file failed. A path that does not exist, or a folder without X-ray files, is
named on stderr (one line each) before the model loads, and the command exits 2.

CSV columns: file, probability, decision, threshold, error (as ever), then status (answered, out_of_scope or
unreadable), reason and model_version.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from typing import TYPE_CHECKING

from model.artifact import DEFAULT_ARTIFACT
from model.commands.cli import (
    Parser,
    UsageError,
    add_precision_argument,
    report_skipped,
    run,
    setup_logging,
    start_tensorflow,
)
from model.data import image_files
from model.gate import UNREADABLE
from model.images import EXTENSIONS, FORMAT_NAMES, ImageError
from model.progress import Progress

if TYPE_CHECKING:
    from model.serving.predictor import Prediction

BATCH_SIZE = 8


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = Parser(prog="python -m model.predict", description=__doc__)
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE_OR_FOLDER",
                        help=f"X-ray files ({FORMAT_NAMES}), or folders of them")
    parser.add_argument("--model", type=Path, default=DEFAULT_ARTIFACT, help="artifact folder or .keras file")
    parser.add_argument("--csv", type=Path, default=None, help="also write the results to this CSV file")
    add_precision_argument(parser)
    return parser.parse_args(argv)


def input_files(paths: list[Path]) -> list[Path]:
    """The files to predict: each file as given, each folder's X-ray files (model.data.image_files: recursive,
    sorted), in the order given; a usage error naming every path that does not exist or folder without X-rays."""
    problems = [f"{path}: no such file or folder" for path in paths if not path.exists()]
    problems += [f"{path}: no X-ray files ({', '.join(EXTENSIONS)}) in this folder" for path in paths
                 if path.is_dir() and not image_files(path)]
    if problems:
        raise UsageError("\n".join(problems))
    return [file for path in paths for file in (image_files(path) if path.is_dir() else [path])]


COLUMNS = ("file", "probability", "decision", "threshold", "error", "status", "reason", "model_version")


def row(path: Path, result: Prediction | ImageError, version: str) -> dict[str, str]:
    """One file's line on stdout (or stderr for an error) and its CSV row; only an answered file has a
    probability, decision and threshold."""
    empty = dict.fromkeys(COLUMNS, "") | {"file": str(path), "model_version": version}
    if isinstance(result, ImageError):
        print(f"{path}: error: {result}", file=sys.stderr, flush=True)
        return empty | {"error": str(result), "status": UNREADABLE, "reason": str(result)}
    if not result.answered:
        print(f"{path}\tout of scope\t{result.reason}", flush=True)
        return empty | {"status": result.status, "reason": result.reason}
    print(f"{path}\t{result.probability:.4f}\t{result.label}", flush=True)
    return empty | {"probability": f"{result.probability:.6f}", "decision": result.label,
                    "threshold": f"{result.threshold:.6f}", "status": result.status, "reason": result.reason}


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = parse_args(argv)
    files = input_files(args.files)
    start_tensorflow(args.verbose)
    from model.serving.predictor import load_predictor

    predictor = load_predictor(args.model, args.precision)
    rows, failed = [], []
    progress = Progress("predict", len(files), every_s=10.0)
    for start in range(0, len(files), BATCH_SIZE):
        paths = files[start : start + BATCH_SIZE]
        for path, result in zip(paths, predictor.predict_many(paths)):
            rows.append(row(path, result, predictor.version))
            if isinstance(result, ImageError):
                failed.append(path)
        progress.advance(len(paths))
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    return report_skipped(failed, len(files))

