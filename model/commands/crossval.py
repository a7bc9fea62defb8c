"""Patient-grouped k-fold cross-validation of one configuration: python -m model.crossval --data DIR [options].

Each fold's patients are scored by a head trained on the other folds, at a threshold chosen on an inner
validation part of those other folds; the pooled out-of-fold AUC, sensitivity and specificity come with
their 95% intervals. Frozen-base features come from the same cache as training and tuning. --extra-train images
join every fold's training part only; --extra-split folders are cross-validated with --data, their patients in
the folds like any others.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from model.artifact import artifact_paths, load_card
from model.commands.cli import (
    Parser,
    add_data_arguments,
    add_head_arguments,
    cache_from_args,
    check_inputs,
    config_from_args,
    examples_from_args,
    precision_from_args,
    report_skipped,
    run,
    setup_logging,
    start_tensorflow,
)
from model.data import scan_folder
from model.markdown import fmt

POOLED = ("n", "auc", "auc_ci95", "sensitivity", "sensitivity_ci95", "specificity", "specificity_ci95")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = Parser(prog="python -m model.crossval", description=__doc__)
    add_data_arguments(parser)
    add_head_arguments(parser)
    parser.add_argument("--folds", type=int, default=5, help="number of patient-grouped folds (default 5)")
    parser.add_argument("--out", type=Path, default=Path("runs/crossval"), help="report folder")
    parser.add_argument("--record-in", type=Path, default=None, metavar="ARTIFACT",
                        help="also record the pooled result as the cross_validation of this artifact's model card")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = parse_args(argv)
    check_inputs(args)
    config = config_from_args(args)
    start = time.time()
    examples = examples_from_args(args) + [e for folder in args.extra_split
                                           for e in scan_folder(folder, args.positive, require_both=False)]
    start_tensorflow(args.verbose)
    from model.features import featurizer
    from model.training.evaluation import cross_validated_summary
    from model.training.folds import cross_validate
    from model.training.report import write_report

    features = featurizer(config, cache_from_args(args), precision_from_args(args))
    scored = features(examples, args.views)
    extra = scan_folder(args.extra_train, args.positive, require_both=False)[: args.extra_limit] if args.extra_train else []
    evaluations = cross_validate(scored, config, args.folds, args.seed, features(extra, args.views) if extra else None)
    summary = cross_validated_summary(evaluations)
    meta = {"command": "python -m model.crossval", "data": str(args.data), "folds": args.folds,
            "seconds": round(time.time() - start), **config.to_dict()}
    write_report(args.out, evaluations, None, meta)
    (args.out / "crossval.json").write_text(json.dumps({"meta": meta, "summary": summary}, indent=2, default=str))
    print(json.dumps({k: summary["pooled"][k] for k in POOLED}))
    print("per fold: " + json.dumps({k: summary[k] for k in ("auc", "sensitivity", "specificity")}))
    within = summary["pooled"].get("within_collection")
    if within:
        print(f"COVID-19 vs other pneumonias within {' + '.join(within['sources'])} ({within['n']} films): "
              f"AUC {fmt(within['auc'])} {fmt(within['auc_ci95'])}")
    print(f"wrote {args.out / 'crossval.json'} in {time.time() - start:.0f} s")
    if args.record_in:
        record_in_card(args.record_in, summary, meta, " ".join(["python -m model.crossval", *(argv or sys.argv[1:])]))
    return report_skipped(scored.skipped, len(examples))


def record_in_card(artifact: Path, summary: dict, meta: dict, command: str) -> None:
    """Write the pooled out-of-fold result, per-fold spread and the command into the artifact's card."""
    _, card_path = artifact_paths(artifact)
    card = load_card(artifact)
    record = {"folds": meta["folds"], "grouping": "patient", "command": command, "pooled_out_of_fold": summary["pooled"],
              **{k: summary[k] for k in ("auc", "sensitivity", "specificity")}}
    card_path.write_text(dataclasses.replace(card, cross_validation=record).to_json())
    print(f"recorded in {card_path}")

