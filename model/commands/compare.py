"""Compare a candidate model with the app's model on the same images: python -m model.compare CANDIDATE --data DIR.

Prints each model's AUC with a 95% interval, sensitivity and specificity at each model's own card threshold, the
paired differences (candidate - current) of all three with 95% paired bootstrap intervals over patients, and a
verdict: worse (any difference's interval below 0), better (the AUC's above 0, none below) or not distinguishable.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from model.artifact import DEFAULT_ARTIFACT
from model.commands.cli import (
    Parser,
    add_cache_arguments,
    add_positive_argument,
    cache_from_args,
    check_inputs,
    report_skipped,
    run,
    setup_logging,
    start_tensorflow,
)
from model.data import scan_folder
from model.markdown import fmt, table

if TYPE_CHECKING:
    from model.training.paired import Comparison


def add_comparison_arguments(parser: argparse.ArgumentParser, data_required: bool = True) -> None:
    """--data, --positive, the cache flags, --resamples and --seed (model.compare and model.promote share them)."""
    parser.add_argument("--data", type=Path, required=data_required, default=None,
                        help="labelled folder both models are scored on (class sub-folders, optional MANIFEST.csv)")
    add_positive_argument(parser)
    add_cache_arguments(parser)
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default %(default)s)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command's flags."""
    parser = Parser(prog="python -m model.compare", description=__doc__)
    parser.add_argument("candidate", type=Path, help="artifact folder (or .keras file) of the candidate model")
    parser.add_argument("--against", type=Path, default=DEFAULT_ARTIFACT,
                        help="the current model (default: the app's model, %(default)s)")
    add_comparison_arguments(parser)
    parser.add_argument("--json", type=Path, default=None, help="also write the comparison as JSON here")
    return parser.parse_args(argv)


def comparison_lines(comparison: Comparison) -> list[str]:
    """The comparison as a Markdown table, the paired difference and the verdict."""
    header = ["model", "path", "version", "threshold", "AUC", "AUC 95% CI", "sensitivity", "95% CI", "specificity",
              "95% CI"]
    rows = [[name, s.path, s.version or "n/a", s.threshold, s.auc, s.auc_ci95, s.sensitivity, s.sensitivity_ci95,
             s.specificity, s.specificity_ci95]
            for name, s in (("candidate", comparison.candidate), ("current", comparison.current))]
    differences = [("AUC", comparison.difference, comparison.difference_ci95),
                   ("sensitivity", comparison.sensitivity_difference, comparison.sensitivity_difference_ci95),
                   ("specificity", comparison.specificity_difference, comparison.specificity_difference_ci95)]
    return [
        f"{comparison.n} images of {comparison.n_patients} patients in {comparison.data}", "", *table(header, rows), "",
        *(f"{name} difference (candidate - current): {'n/a' if value is None else f'{value:+.3f}'}, "
          f"95% CI {fmt(ci)}" for name, value, ci in differences),
        f"({comparison.method}, {comparison.resamples} resamples; sensitivity and specificity at each model's own "
        "threshold)",
        f"verdict: {comparison.verdict} ({comparison.reason})",
    ]


def compare_from_args(candidate: Path, current: Path, args: argparse.Namespace) -> tuple[Comparison, int]:
    """Run the comparison the flags describe and print it; (comparison, exit status for unusable files). The inputs
    are checked and the data scanned before TensorFlow starts."""
    check_inputs(args)
    examples = scan_folder(args.data, positive=args.positive)
    start_tensorflow(getattr(args, "verbose", False))
    from model.training.paired import compare_models

    comparison, skipped = compare_models(candidate, current, examples, str(args.data), cache_from_args(args),
                                         args.resamples, args.seed)
    print("\n".join(comparison_lines(comparison)))
    return comparison, report_skipped(skipped, len(examples))


def main(argv: list[str] | None = None) -> int:
    """Compare, print, optionally write JSON; exit 1 when some images could not be read."""
    setup_logging()
    args = parse_args(argv)
    comparison, status = compare_from_args(args.candidate, args.against, args)
    if args.json:
        args.json.write_text(json.dumps(comparison.to_dict(), indent=2))
    return status

