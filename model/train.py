"""Train one configuration on a labelled folder: python -m model.train --data DIR --out DIR [options].

The frozen VGG-16 base runs once per image (cached); the head trains on its features. The threshold is
chosen on the validation patients, the test patients are scored once, and the artifact and report are
written to --out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from model.cli import add_data_arguments, add_head_arguments, cache_from_args, config_from_args, split_from_args
from model.training import featurize, fine_tune, finish, prepare, train_head


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser)
    add_head_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("runs/train"), help="artifact and report folder")
    parser.add_argument("--fine-tune-epochs", type=int, default=0,
                        help="then unfreeze the base and train end to end for N epochs at lr 1e-5 (slow without a GPU)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config = config_from_args(args)
    start = time.time()
    split = split_from_args(args)
    base, sets = prepare(split, config, args.views, cache_from_args(args))
    print(f"features ready in {time.time() - start:.0f} s", flush=True)
    head, history = train_head(base, sets, config, verbose=2)
    if not np.isfinite(history["loss"][-1]):
        raise SystemExit(f"error: training diverged (loss {history['loss'][-1]}); lower --lr or change --optimizer")
    if args.fine_tune_epochs:
        from model.architecture import assemble

        tuned = fine_tune(assemble(base, head), split.train, split.validation, config, args.fine_tune_epochs)
        history = {**history, **{f"fine_tune_{k}": v for k, v in tuned.items()}}
        sets = {name: featurize(base, "", features.examples, 0, None) for name, features in sets.items()}
    path, evaluations = finish(base, head, config, sets, args.out, history, args.target_sensitivity,
                               meta={"command": "python -m model.train", "data": str(args.data)})
    for evaluation in evaluations:
        shown = {k: evaluation.metrics[k] for k in ("auc", "auc_ci95", "sensitivity", "specificity", "f1", "accuracy")}
        print(f"{evaluation.name}: {json.dumps(shown)}")
    print(f"wrote {path} and {args.out / 'report.md'} in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
