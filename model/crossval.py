"""Patient-grouped k-fold cross-validation of one configuration: python -m model.crossval --data DIR [options].

Each fold's patients are scored by a head trained on the other folds, at a threshold chosen on an inner
validation part of those other folds; the pooled out-of-fold AUC, sensitivity and specificity come with
their 95% intervals. Frozen-base features come from the same cache as training and tuning.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from model.architecture import build_base
from model.cli import (
    add_data_arguments,
    add_head_arguments,
    cache_from_args,
    config_from_args,
    examples_from_args,
    precision_from_args,
    report_skipped,
    run,
    setup_logging,
)
from model.features import feature_network, featurize
from model.training.crossval import cross_validate
from model.training.evaluation import cross_validated_summary
from model.training.report import write_report

POOLED = ("n", "auc", "auc_ci95", "sensitivity", "sensitivity_ci95", "specificity", "specificity_ci95")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m model.crossval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser)
    add_head_arguments(parser)
    parser.add_argument("--folds", type=int, default=5, help="number of patient-grouped folds (default 5)")
    parser.add_argument("--out", type=Path, default=Path("runs/crossval"), help="report folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = parse_args(argv)
    config = config_from_args(args)
    start = time.time()
    examples = examples_from_args(args)
    base = build_base(config.input_size, config.weights, config.seed)
    network, key = feature_network(base, precision_from_args(args))
    features = featurize(network, key, examples, args.views, cache_from_args(args), config.seed)
    evaluations = cross_validate(features, config, args.folds, args.seed)
    summary = cross_validated_summary(evaluations)
    meta = {"command": "python -m model.crossval", "data": str(args.data), "folds": args.folds,
            "seconds": round(time.time() - start), **config.to_dict()}
    write_report(args.out, evaluations, None, meta)
    (args.out / "crossval.json").write_text(json.dumps({"meta": meta, "summary": summary}, indent=2, default=str))
    print(json.dumps({k: summary["pooled"][k] for k in POOLED}))
    print("per fold: " + json.dumps({k: summary[k] for k in ("auc", "sensitivity", "specificity")}))
    print(f"wrote {args.out / 'crossval.json'} in {time.time() - start:.0f} s")
    return report_skipped(features.skipped, len(examples))


if __name__ == "__main__":
    sys.exit(run(main))
