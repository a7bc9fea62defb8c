"""Predict files: python -m model.predict FILE... [--model PATH] [--csv OUT].

One line per file: probability of COVID-19 and the decision at the model card's threshold. Unusable files
are reported on stderr and skipped; the exit status is 1 if any file failed.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from model.artifact import DEFAULT_ARTIFACT
from model.cli import report_skipped, run, setup_logging
from model.images import FORMAT_NAMES, ImageError
from model.serving.predictor import load_predictor


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m model.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path, help=f"X-ray files ({FORMAT_NAMES})")
    parser.add_argument("--model", type=Path, default=DEFAULT_ARTIFACT, help="artifact folder or .keras file")
    parser.add_argument("--csv", type=Path, default=None, help="also write the results to this CSV file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = parse_args(argv)
    predictor = load_predictor(args.model)
    rows, failed = [], []
    for path in args.files:
        try:
            result = predictor.predict(path)
        except ImageError as error:
            failed.append(path)
            print(f"{path}: error: {error}", file=sys.stderr, flush=True)
            rows.append({"file": str(path), "probability": "", "decision": "", "threshold": "", "error": str(error)})
            continue
        print(f"{path}\t{result.probability:.4f}\t{result.label}", flush=True)
        rows.append({"file": str(path), "probability": f"{result.probability:.6f}", "decision": result.label,
                     "threshold": f"{result.threshold:.6f}", "error": ""})
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return report_skipped(failed, len(args.files))


if __name__ == "__main__":
    sys.exit(run(main))
