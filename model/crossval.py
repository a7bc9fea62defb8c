"""Patient-grouped k-fold cross-validation of one configuration: python -m model.crossval --data DIR [options].

Each fold's patients are scored by a head trained on the other folds, at a threshold chosen on an inner
validation part of those other folds; the pooled out-of-fold AUC, sensitivity and specificity come with
their 95% intervals. Frozen-base features come from the same cache as training and tuning.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from model.architecture import build_base
from model.cli import add_data_arguments, add_head_arguments, cache_from_args, config_from_args, examples_from_args
from model.evaluation import cross_validated_summary, evaluate
from model.features import base_key
from model.report import write_report
from model.training import Features, featurize, pick_threshold, probabilities, train_head


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser)
    add_head_arguments(parser)
    parser.add_argument("--folds", type=int, default=5, help="number of patient-grouped folds (default 5)")
    parser.add_argument("--out", type=Path, default=Path("runs/crossval"), help="report folder")
    return parser.parse_args(argv)


def grouped_folds(features: Features, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train indices, held-out indices) per fold, stratified by label and grouped by patient."""
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    groups = [e.patient_id for e in features.examples]
    return list(splitter.split(np.zeros(len(features.y)), features.y, groups))


def run_fold(name: str, base, features: Features, train_idx, test_idx, config, seed: int):
    """Train on train_idx (minus an inner validation part for the threshold) and evaluate test_idx."""
    rest = features.take(train_idx)
    inner_train, inner_val = grouped_folds(rest, 5, seed)[0]
    sets = {"train": rest.take(inner_train), "validation": rest.take(inner_val)}
    head, _ = train_head(base, sets, config)
    threshold, _ = pick_threshold(sets["validation"].y, probabilities(head, sets["validation"]), None)
    held_out = features.take(test_idx)
    return evaluate(name, held_out.y, probabilities(head, held_out), threshold, [e.source for e in held_out.examples])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config = config_from_args(args)
    start = time.time()
    examples = examples_from_args(args)
    base = build_base(config.input_size, config.weights, config.seed)
    key = base_key(base)
    features = featurize(base, key, examples, args.views, cache_from_args(args), config.seed)
    evaluations = [
        run_fold(f"fold{k}", base, features, train_idx, test_idx, config, args.seed + k)
        for k, (train_idx, test_idx) in enumerate(grouped_folds(features, args.folds, args.seed), start=1)
    ]
    summary = cross_validated_summary(evaluations)
    meta = {"command": "python -m model.crossval", "data": str(args.data), "folds": args.folds,
            "seconds": round(time.time() - start), **config.to_dict()}
    write_report(args.out, evaluations, None, meta)
    (args.out / "crossval.json").write_text(json.dumps({"meta": meta, "summary": summary}, indent=2, default=str))
    pooled = summary["pooled"]
    print(json.dumps({k: pooled[k] for k in ("n", "auc", "auc_ci95", "sensitivity", "sensitivity_ci95",
                                            "specificity", "specificity_ci95")}))
    print("per fold: " + json.dumps({k: summary[k] for k in ("auc", "sensitivity", "specificity")}))
    print(f"wrote {args.out / 'crossval.json'} in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
