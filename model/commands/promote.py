"""Install a candidate as the app's model when it is not worse: python -m model.promote CANDIDATE --data DIR.

The candidate is compared with the installed model on --data (as python -m model.compare does) and is
refused (exit 2) when it is worse: the paired difference interval of its AUC, or of its sensitivity or
specificity at its own threshold, lies below 0; --force installs it regardless. The candidate's whole folder
is installed, with the comparison (promotion.md, promotion.json, and report.md where the candidate has none);
the replaced folder is kept whole in TARGET.previous, and --rollback swaps it back. The installed card's
`history` records every promotion and rollback with both versions. A running app serves the new model from
its next requests, without a restart.

A candidate that lacks a safeguard the installed model has (its input gate, calibration, the operating point chosen
for hospitals never seen, film finding, lung cropping: model.card.SAFEGUARDS) is refused, --force or not, unless
--drop names exactly the safeguards it drops; the card's history then records them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from model.artifact import (
    DEFAULT_ARTIFACT,
    artifact_paths,
    install_artifact,
    load_card,
    previous_of,
    rollback_artifact,
)
from model.card import SAFEGUARDS, ModelCard
from model.commands.cli import Parser, UsageError, check_inputs, run, setup_logging
from model.commands.compare import add_comparison_arguments, compare_from_args, comparison_lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command's flags."""
    parser = Parser(prog="python -m model.promote", description=__doc__)
    parser.add_argument("candidate", type=Path, nargs="?", default=None, help="artifact folder of the candidate model")
    parser.add_argument("--target", type=Path, default=DEFAULT_ARTIFACT,
                        help="the app's model folder (default %(default)s); the replaced model goes to TARGET.previous")
    parser.add_argument("--force", action="store_true", help="install even when the candidate is worse or not compared")
    parser.add_argument("--rollback", action="store_true", help="restore the model kept in TARGET.previous")
    parser.add_argument("--drop", nargs="+", default=[], choices=sorted(SAFEGUARDS), metavar="SAFEGUARD",
                        help="install a candidate that lacks these safeguards of the installed model, named exactly "
                             f"(of {', '.join(SAFEGUARDS)}); recorded in the card's history")
    add_comparison_arguments(parser, data_required=False)
    return parser.parse_args(argv)


def _verdict(args: argparse.Namespace) -> tuple[str, int, dict[str, str]]:
    """The comparison's verdict (or why none was made), the exit status for unusable files, and the reports
    describing the comparison to install with the candidate."""
    if not artifact_paths(args.target)[0].is_file():
        return "first install", 0, {}
    if args.data is None:
        if not args.force:
            raise UsageError("give --data DIR to compare the candidate with the installed model, or --force")
        return "forced without comparison", 0, {}
    comparison, status = compare_from_args(args.candidate, args.target, args)
    from model.training.paired import WORSE

    if comparison.verdict == WORSE and not args.force:
        raise UsageError(f"not installed: the candidate is worse than {args.target} on {args.data} "
                         f"({comparison.reason}); --force installs it anyway")
    text = "\n".join(["# Promotion comparison", "", *comparison_lines(comparison)]) + "\n"
    reports = {"promotion.md": text, "promotion.json": json.dumps(comparison.to_dict(), indent=2)}
    if args.candidate.is_dir() and not (args.candidate / "report.md").is_file():
        reports["report.md"] = text
    return comparison.verdict + (" (forced)" if comparison.verdict == WORSE else ""), status, reports


def _dropped(args: argparse.Namespace) -> list[str]:
    """The installed model's safeguards the candidate lacks, when --drop names exactly those; else a UsageError."""
    installed = load_card(args.target).safeguards if artifact_paths(args.target)[0].is_file() else frozenset()
    lacking = sorted(installed - load_card(args.candidate).safeguards)
    if set(args.drop) != set(lacking):
        what = (f"the candidate lacks {', '.join(lacking)} of the installed model; --drop {' '.join(lacking)} installs "
                "it without them" if lacking else "the candidate drops no safeguard of the installed model")
        raise UsageError(f"not installed: {what} (--drop named {' '.join(args.drop) or 'nothing'})")
    return lacking


def _say(what: str, card: ModelCard, target: Path) -> None:
    """One line naming the installed version, the one it replaced and where that one is kept."""
    entry = card.history[-1]
    dropped = f"; dropped {', '.join(entry['dropped'])}" if entry.get("dropped") else ""
    print(f"{what} {entry['version']} as {target} (replaced {entry['replaced'] or 'nothing'}; "
          f"previous kept in {previous_of(target)}{dropped})")


def main(argv: list[str] | None = None) -> int:
    """Roll back, or compare and install; UsageError (exit 2) when the candidate is refused. The inputs are checked
    before anything is loaded; TensorFlow starts only for a comparison (model.compare.compare_from_args)."""
    setup_logging()
    args = parse_args(argv)
    check_inputs(args)
    if args.rollback:
        if args.candidate is not None:
            raise UsageError("--rollback takes no CANDIDATE")
        _say("restored", rollback_artifact(args.target), args.target)
        return 0
    if args.candidate is None:
        raise UsageError("give the CANDIDATE artifact folder to promote, or --rollback")
    if args.candidate.resolve() == args.target.resolve():
        raise UsageError(f"the candidate {args.candidate} is already the target")
    dropped = _dropped(args)
    verdict, status, reports = _verdict(args)
    _say("installed", install_artifact(args.candidate, args.target, verdict, str(args.data or ""), reports, dropped),
         args.target)
    return status

