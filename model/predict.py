"""Predict files: python -m model.predict FILE... [--model PATH] [--csv OUT].

One line per file: probability of COVID-19 and the decision at the model card's threshold, or, for a file the
input gate refuses (not an adult frontal chest film), "out of scope" and why, with no probability or decision.
Files go through the network in batches, with progress on stderr. Unusable files are reported on stderr and
skipped; the exit status is 1 if any file failed.

CSV columns: file, probability, decision, threshold, error (as ever), then status (answered, out_of_scope or
unreadable), reason and model_version.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from model.artifact import DEFAULT_ARTIFACT
from model.cli import add_precision_argument, report_skipped, run, setup_logging
from model.gate import UNREADABLE
from model.images import FORMAT_NAMES, ImageError
from model.progress import Progress
from model.serving.predictor import Prediction, load_predictor

BATCH_SIZE = 8


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m model.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path, help=f"X-ray files ({FORMAT_NAMES})")
    parser.add_argument("--model", type=Path, default=DEFAULT_ARTIFACT, help="artifact folder or .keras file")
    parser.add_argument("--csv", type=Path, default=None, help="also write the results to this CSV file")
    add_precision_argument(parser)
    return parser.parse_args(argv)


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
    predictor = load_predictor(args.model, args.precision)
    rows, failed = [], []
    progress = Progress("predict", len(args.files), every_s=10.0)
    for start in range(0, len(args.files), BATCH_SIZE):
        paths = args.files[start : start + BATCH_SIZE]
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
    return report_skipped(failed, len(args.files))


if __name__ == "__main__":
    sys.exit(run(main))
