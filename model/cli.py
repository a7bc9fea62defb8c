"""The command-line convention of every command: shared flags (data, split, base, head), logging and exit statuses.

A user error (bad flag, missing folder, unusable weights or card) prints one line on stderr and exits 2;
unusable input files are each named and make the command exit 1 once it has done what it could.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

import settings
from model.config import (
    BLOCKS,
    DEFAULT_POSITIVE_FOLDERS,
    EQUALIZATIONS,
    HEADS,
    OPTIMIZERS,
    POOLINGS,
    REFERENCE,
    ModelConfig,
)
from model.data import (
    Example,
    Split,
    describe_split,
    merge_corrections,
    scan_folder,
    split_by_patient,
)
from model.precision import PRECISIONS, resolve

log = logging.getLogger("xray-covid")
USAGE_ERROR = 2
BAD_INPUT = 1


class UsageError(Exception):
    """The command was asked something it cannot do; the message says what to change."""


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the user asked for something impossible, not that the program is broken."""
    from model.architecture import WeightsUnavailable

    return UsageError, ValueError, FileNotFoundError, NotADirectoryError, WeightsUnavailable


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of each message (tests and tools swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def setup_logging() -> None:
    """Progress and warnings of every command on stderr, one line each; calling it again changes nothing."""
    root = logging.getLogger()
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.INFO)


def run(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run a command's main the same way for every command; returns the exit status."""
    try:
        return int(main(argv) or 0)
    except user_errors() as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def report_skipped(paths: Sequence[Path], total: int) -> int:
    """Name each unusable input file once more at the end; the exit status for them (0 when none)."""
    for path in paths:
        log.error("unusable input file: %s", path)
    if paths:
        log.error("%d of %d input files could not be read", len(paths), total)
    return BAD_INPUT if paths else 0


def add_positive_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument("--positive", nargs="+", default=list(DEFAULT_POSITIVE_FOLDERS),
                        help="class folder names that mean COVID-19 positive (default: %(default)s)")


def add_cache_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument("--cache", type=Path, default=settings.feature_cache(),
                        help="feature cache folder (default %(default)s; XRAY_FEATURE_CACHE sets it)")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")


def add_precision_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="network precision: auto (serving: the faster on this CPU, measured once and cached; "
                             "feature extraction: bfloat16 where the CPU has AMX), float32 or bfloat16 "
                             "(default: $XRAY_PRECISION, else auto)")


def precision_from_args(args: argparse.Namespace) -> str:
    """The precision the flag (else $XRAY_PRECISION, else auto) chooses on this CPU; the reason is logged."""
    return resolve(args.precision)


def add_split_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The flags that decide the examples and their split (python -m model.data shows the result); the group."""
    group = parser.add_argument_group("data")
    group.add_argument("--data", type=Path, required=True, help="folder with one sub-folder per class")
    add_positive_argument(group)
    group.add_argument("--feedback", type=Path, default=None,
                       help="exported corrections folder (python -m feedback export): a correction replaces the label "
                            "of the same image in place (see python -m model.data)")
    group.add_argument("--val-fraction", type=float, default=0.15, help="patients held out for validation")
    group.add_argument("--test-fraction", type=float, default=0.15, help="patients held out for the final test")
    group.add_argument("--seed", type=int, default=0, help="seed for the split, augmentation and initialisation")
    group.add_argument("--extra-train", type=Path, default=None, metavar="DIR",
                       help="a labelled folder (one class is enough, e.g. more normals) added to the training part only")
    group.add_argument("--extra-limit", type=int, default=None, metavar="N",
                       help="take only the first N images of --extra-train, in file-name order")
    return group


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    group = add_split_arguments(parser)
    group.add_argument("--views", type=int, default=2, help="augmented views cached per training image (default 2)")
    add_cache_arguments(group)
    base = parser.add_argument_group("base")
    base.add_argument("--weights", default="imagenet",
                      help="base weights: imagenet, none, or a VGG-16 no-top weights file (default imagenet)")
    base.add_argument("--size", type=int, default=256, help="input size in pixels (default 256)")
    add_precision_argument(base)
    base.add_argument("--target-sensitivity", type=float, default=None,
                      help="choose the threshold for this validation sensitivity (default: Youden's J)")


def add_preprocessing_arguments(parser: argparse.ArgumentParser) -> None:
    prep = parser.add_argument_group("preprocessing and features (defaults: the reference design)")
    prep.add_argument("--crop", type=float, default=REFERENCE.crop, help="fraction of each border to remove")
    prep.add_argument("--harmonize", type=int, default=REFERENCE.harmonize, metavar="PX",
                      help="first bring every image to PX x PX (0: off), so all sources are equally coarse")
    prep.add_argument("--equalize", choices=EQUALIZATIONS, default=REFERENCE.equalize, help="histogram equalization")
    prep.add_argument("--feature-layers", nargs="+", choices=BLOCKS, default=list(REFERENCE.feature_layers),
                      help="VGG-16 blocks the head reads (pooled; flatten reads block5 only)")


def examples_from_args(args: argparse.Namespace) -> list[Example]:
    """Scan the data folder and merge exported corrections (model.data.merge_corrections) into one list."""
    examples = scan_folder(args.data, positive=args.positive)
    return merge_corrections(Split(examples, [], []), args.feedback).train if args.feedback else examples


def split_from_args(args: argparse.Namespace, evaluation: Sequence[Example] = ()) -> Split:
    """The examples split by patient on their own labels, --extra-train added to train, then the --feedback
    corrections merged (none of an `evaluation` image trains), with the counts logged; training, the search and
    python -m model.data all take their examples from here."""
    split = split_by_patient(scan_folder(args.data, positive=args.positive), args.val_fraction, args.test_fraction,
                             args.seed)
    if args.extra_train:
        extra = scan_folder(args.extra_train, positive=args.positive, require_both=False)[: args.extra_limit]
        split = Split(split.train + extra, split.validation, split.test)
    if args.feedback:
        split = merge_corrections(split, args.feedback, evaluation)
    log.info(describe_split(split))
    if split.corrections:
        log.info(split.corrections.describe())
    return split


def corrections_meta(split: Split) -> dict[str, str]:
    """The report line saying what merging corrections did ({} when none were merged)."""
    return {"corrections": split.corrections.describe()} if split.corrections else {}


def cache_from_args(args: argparse.Namespace) -> Path | None:
    return None if args.no_cache else args.cache


def add_head_arguments(parser: argparse.ArgumentParser) -> None:
    add_preprocessing_arguments(parser)
    head = parser.add_argument_group("head and training (defaults: the reference design)")
    head.add_argument("--hparams", type=Path, default=None,
                      help="take the head and training settings from a model_card.json or a JSON config instead")
    head.add_argument("--pooling", choices=POOLINGS, default=REFERENCE.pooling)
    head.add_argument("--head", choices=HEADS, default=REFERENCE.head, help="dense layers, or logistic (none)")
    head.add_argument("--dense", type=int, nargs="*", default=list(REFERENCE.dense), help="dense layer sizes")
    head.add_argument("--dropout", type=float, default=REFERENCE.dropout)
    head.add_argument("--l2", type=float, default=REFERENCE.l2, help="L2 penalty on the head's weights")
    head.add_argument("--optimizer", choices=OPTIMIZERS, default=REFERENCE.optimizer)
    head.add_argument("--lr", type=float, default=REFERENCE.learning_rate, help="learning rate")
    head.add_argument("--epochs", type=int, default=REFERENCE.epochs)
    head.add_argument("--batch-size", type=int, default=REFERENCE.batch_size)
    head.add_argument("--class-weight", action="store_true", help="weight classes by inverse frequency")


def config_from_args(args: argparse.Namespace) -> ModelConfig:
    """The ModelConfig the flags describe; --hparams replaces the head and preprocessing settings, never the
    base weights, the size or the seed (nor a --target-sensitivity given on the command line)."""
    base = {"input_size": args.size, "weights": args.weights, "seed": args.seed}
    if args.target_sensitivity is not None:
        base["target_sensitivity"] = args.target_sensitivity
    if args.hparams:
        if not args.hparams.is_file():
            raise UsageError(f"--hparams {args.hparams}: no such file")
        saved = json.loads(args.hparams.read_text())
        return ModelConfig.from_dict({**saved.get("hyperparameters", saved), **base})
    return ModelConfig(
        crop=args.crop, harmonize=args.harmonize, equalize=args.equalize, feature_layers=tuple(args.feature_layers),
        pooling=args.pooling, head=args.head, dense=tuple(args.dense), dropout=args.dropout, l2=args.l2,
        optimizer=args.optimizer, learning_rate=args.lr, epochs=args.epochs, batch_size=args.batch_size,
        class_weight=args.class_weight, **base,
    )
