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

from model.commands.cli import (
    Parser,
    UsageError,
    add_data_arguments,
    add_fine_tune_arguments,
    add_head_arguments,
    cache_from_args,
    check_inputs,
    config_from_args,
    corrections_meta,
    log,
    precision_from_args,
    reference_from_args,
    report_skipped,
    run,
    setup_logging,
    split_from_args,
    start_tensorflow,
)

SHOWN = ("auc", "auc_ci95", "sensitivity", "specificity", "f1", "accuracy")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = Parser(prog="python -m model.train", description=__doc__)
    add_data_arguments(parser)
    add_head_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("runs/train"), help="artifact and report folder")
    add_fine_tune_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = parse_args(argv)
    check_inputs(args)
    config = config_from_args(args)
    start = time.time()
    split = split_from_args(args)
    reference_examples = reference_from_args(args, split)
    start_tensorflow(args.verbose)
    from model.features import featurizer
    from model.training.export import finish
    from model.training.finetune import featurize_tuned, fine_tune
    from model.training.head import train_head
    from model.training.split_features import prepare

    base, sets = prepare(split, config, args.views, cache_from_args(args), precision_from_args(args))
    reference = featurizer(config, cache_from_args(args), sets.validation.precision)(reference_examples) \
        if reference_examples else None
    log.info("features ready in %.0f s", time.time() - start)
    head, history = train_head(base.output_shape[1:], sets.train, sets.validation, config, verbose=2)
    if not np.isfinite(history["loss"][-1]):
        raise UsageError(f"training diverged (loss {history['loss'][-1]}); lower --lr or change --optimizer")
    skipped = sets.skipped
    if config.fine_tune_epochs:
        sets, tuned = fine_tune(base, head, sets, config, args.out / "fine_tune_backup")
        history = {**history, **tuned}
        reference = featurize_tuned(base, config, reference_examples, sets.validation.precision) \
            if reference_examples else None
    path, evaluations = finish(base, head, config, sets, args.out, history,
                               meta={"command": "python -m model.train", "data": str(args.data),
                                     **corrections_meta(split)}, reference=reference)
    for evaluation in evaluations:
        print(f"{evaluation.name}: {json.dumps({k: evaluation.metrics[k] for k in SHOWN})}")
    print(f"wrote {path} and {args.out / 'report.md'} in {time.time() - start:.0f} s")
    return report_skipped(skipped, len(skipped) + sum(len(p.examples) for p in sets.parts().values()))

