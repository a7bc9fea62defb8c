"""Command-line arguments shared by model.train, model.crossval and the tuner: data, split, base and head."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from model.config import DEFAULT_POSITIVE_FOLDERS, OPTIMIZERS, POOLINGS, REFERENCE, ModelConfig
from model.data import Example, Split, apply_corrections, describe_split, scan_folder, split_by_patient
from model.features import DEFAULT_CACHE


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--data", type=Path, required=True, help="folder with one sub-folder per class")
    group.add_argument("--positive", nargs="+", default=list(DEFAULT_POSITIVE_FOLDERS),
                       help="class folder names that mean COVID-19 positive (default: %(default)s)")
    group.add_argument("--feedback", type=Path, default=None,
                       help="exported corrections folder (python -m feedback export); a correction overrides the label")
    group.add_argument("--val-fraction", type=float, default=0.15, help="patients held out for validation")
    group.add_argument("--test-fraction", type=float, default=0.15, help="patients held out for the final test")
    group.add_argument("--seed", type=int, default=0, help="seed for the split, augmentation and initialisation")
    group.add_argument("--views", type=int, default=2, help="augmented views cached per training image (default 2)")
    group.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="feature cache folder (default %(default)s)")
    group.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    base = parser.add_argument_group("base")
    base.add_argument("--weights", default="imagenet",
                      help="base weights: imagenet, none, or a VGG-16 no-top weights file (default imagenet)")
    base.add_argument("--size", type=int, default=256, help="input size in pixels (default 256)")
    base.add_argument("--target-sensitivity", type=float, default=None,
                      help="choose the threshold for this validation sensitivity (default: Youden's J)")


def examples_from_args(args: argparse.Namespace) -> list[Example]:
    """Scan the data folder and merge exported corrections, a correction overriding the label."""
    examples = scan_folder(args.data, positive=args.positive)
    return apply_corrections(examples, args.feedback) if args.feedback else examples


def split_from_args(args: argparse.Namespace) -> Split:
    """The examples split by patient, with the counts printed."""
    split = split_by_patient(examples_from_args(args), args.val_fraction, args.test_fraction, args.seed)
    print(describe_split(split), flush=True)
    return split


def cache_from_args(args: argparse.Namespace) -> Path | None:
    return None if args.no_cache else args.cache


def add_head_arguments(parser: argparse.ArgumentParser) -> None:
    head = parser.add_argument_group("head and training (defaults: the reference design)")
    head.add_argument("--hparams", type=Path, default=None,
                      help="take the head and training settings from a model_card.json or a JSON config instead")
    head.add_argument("--pooling", choices=POOLINGS, default=REFERENCE.pooling)
    head.add_argument("--dense", type=int, nargs="*", default=list(REFERENCE.dense), help="dense layer sizes")
    head.add_argument("--dropout", type=float, default=REFERENCE.dropout)
    head.add_argument("--optimizer", choices=OPTIMIZERS, default=REFERENCE.optimizer)
    head.add_argument("--lr", type=float, default=REFERENCE.learning_rate, help="learning rate")
    head.add_argument("--epochs", type=int, default=REFERENCE.epochs)
    head.add_argument("--batch-size", type=int, default=REFERENCE.batch_size)
    head.add_argument("--class-weight", action="store_true", help="weight classes by inverse frequency")


def config_from_args(args: argparse.Namespace) -> ModelConfig:
    """The ModelConfig the flags describe; --hparams replaces the head settings, never the base or the seed."""
    base = {"input_size": args.size, "weights": args.weights, "seed": args.seed}
    if args.hparams:
        saved = json.loads(args.hparams.read_text())
        return ModelConfig.from_dict({**saved.get("hyperparameters", saved), **base})
    return ModelConfig(
        pooling=args.pooling, dense=tuple(args.dense), dropout=args.dropout, optimizer=args.optimizer,
        learning_rate=args.lr, epochs=args.epochs, batch_size=args.batch_size, class_weight=args.class_weight, **base,
    )
