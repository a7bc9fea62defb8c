"""The command-line convention of every command: shared flags (data, split, base, head), logging and exit statuses.

A user error (bad flag, missing folder, unusable weights or card) prints one line on stderr and exits 2;
unusable input files are each named and make the command exit 1 once it has done what it could. A command checks
its arguments and inputs (Parser, then its own checks) before it imports TensorFlow (start_tensorflow) or writes
anything, so a mistake costs no start-up and leaves nothing behind; TensorFlow's own start-up logging is silenced
unless --verbose. This module imports neither TensorFlow nor Keras.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import typing
from pathlib import Path
from typing import Callable, Sequence

import settings
from model.config import (
    BASE,
    DEFAULT_POSITIVE_FOLDERS,
    FEATURES,
    FINE_TUNE,
    HEAD,
    PREPROCESSING,
    SPLIT,
    UNSEEN_SOURCES,
    ModelConfig,
    fields_of,
)
from model.data import (
    Example,
    Split,
    describe_split,
    merge_corrections,
    scan_folder,
    split_by_patient,
)
from model.images import file_sha256
from model.precision import PRECISIONS, requested_precision

log = logging.getLogger("xray-covid")
USAGE_ERROR = 2
BAD_INPUT = 1


class UsageError(Exception):
    """The command was asked something it cannot do; the message says what to change."""


class Parser(argparse.ArgumentParser):
    """The commands' argument parser: --verbose on every command, and a usage error in one line on stderr that
    points to --help, exit status 2 (argparse's own prints the whole usage first)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self.add_argument("--verbose", action="store_true",
                          help="also show TensorFlow's and Keras' own start-up and progress logging")

    def error(self, message: str) -> typing.NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def start_tensorflow(verbose: bool = False) -> None:
    """Import TensorFlow, once the command has checked its arguments and inputs; unless verbose, its C++ start-up
    lines (the oneDNN notice, which TF_CPP_MIN_LOG_LEVEL does not reach, and the CPU's instructions) and the absl and
    TensorFlow loggers' warnings are silenced, so that what a command prints is its own."""
    if verbose or "tensorflow" in sys.modules:
        import tensorflow  # noqa: F401
        return
    settings.quiet_tensorflow()
    for name in ("absl", "tensorflow"):
        logging.getLogger(name).setLevel(logging.ERROR)
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


INPUTS = {"data": "folder", "feedback": "folder", "extra_train": "folder", "extra_split": "folder",
          "reference_normals": "folder", "external": "folder", "ood": "folder", "hparams": "file",
          "model": "file or folder", "candidate": "file or folder", "against": "file or folder"}
"""The flags (by argparse name) that name an input, and what each must be."""
POSITIONAL_INPUTS = frozenset({"candidate"})
IS_KIND = {"folder": Path.is_dir, "file": Path.is_file, "file or folder": Path.exists}
NO_WEIGHTS_FILE = ("imagenet", "none", "None", "")


def check_inputs(args: argparse.Namespace) -> None:
    """Every input the command's flags name exists (INPUTS) and --weights is imagenet, none or a file: a usage error
    naming each one that does not, one line each, before TensorFlow starts or anything is written."""
    problems = []
    for dest, kind in INPUTS.items():
        value = getattr(args, dest, None)
        for path in value if isinstance(value, list) else [value] if value is not None else []:
            if not IS_KIND[kind](Path(path)):
                name = dest if dest in POSITIONAL_INPUTS else f"--{dest.replace('_', '-')}"
                problems.append(f"{name} {path}: no such {kind}")
    weights = getattr(args, "weights", None)
    if weights not in (None, *NO_WEIGHTS_FILE) and not Path(weights).is_file():
        problems.append(f"--weights {weights}: no such file (give imagenet, none or a VGG-16 no-top weights file, "
                        "such as python -m model.offline_weights writes)")
    if problems:
        raise UsageError("\n".join(problems))


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the user asked for something impossible, not that the program is broken (the base
    weights' error only once model.architecture, which raises it, is loaded: asking must not start TensorFlow)."""
    architecture = sys.modules.get("model.architecture")
    unavailable = (architecture.WeightsUnavailable,) if architecture else ()
    return UsageError, ValueError, FileNotFoundError, NotADirectoryError, *unavailable


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
    """Run a command's main the same way for every command; returns the exit status. A user error is one line on
    stderr (one per problem where it names several)."""
    try:
        return int(main(argv) or 0)
    except user_errors() as error:
        print("\n".join(f"error: {line}" for line in str(error).splitlines() or [""]), file=sys.stderr)
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
                        help="network precision: auto (the faster on this CPU, measured once on the loaded network "
                             "and cached), float32 (reproduces a float32 model exactly on any CPU) or bfloat16 "
                             "(default: $XRAY_PRECISION, else auto)")


def precision_from_args(args: argparse.Namespace) -> str:
    """The precision the flag (else $XRAY_PRECISION, else auto) asks for; `auto` is measured where a network runs."""
    return requested_precision(args.precision)


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
    add_config_arguments(group, SPLIT)
    group.add_argument("--extra-train", type=Path, default=None, metavar="DIR",
                       help="a labelled folder (one class is enough, e.g. more normals) added to the training part only")
    group.add_argument("--extra-limit", type=int, default=None, metavar="N",
                       help="take only the first N images of --extra-train, in file-name order")
    group.add_argument("--extra-split", type=Path, nargs="+", default=[], metavar="DIR",
                       help="labelled folders (one class is enough, e.g. adult pneumonias as negatives) split by patient "
                            "like --data, each part added to the same part")
    group.add_argument("--reference-normals", type=Path, default=None, metavar="DIR",
                       help="normal films no model trains on (images also in the data or --extra-train are left out): "
                            "--operating-point unseen_sources sets the threshold's specificity on them")
    return group


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    group = add_split_arguments(parser)
    group.add_argument("--views", type=int, default=2, help="augmented views cached per training image (default 2)")
    add_cache_arguments(group)
    base = parser.add_argument_group("base")
    add_config_arguments(base, BASE)
    add_precision_argument(base)


def flag_of(knob: dataclasses.Field) -> str:
    """A ModelConfig field's command-line flag: its `flag` metadata, else --the-field-name."""
    return knob.metadata.get("flag", "--" + knob.name.replace("_", "-"))


def dest_of(knob: dataclasses.Field) -> str:
    """Where argparse keeps a ModelConfig field's flag value."""
    return flag_of(knob).removeprefix("--").replace("-", "_")


def add_config_arguments(group: argparse._ArgumentGroup, name: str, exclude: typing.Collection[str] = ()) -> None:
    """One flag per ModelConfig field of the group `name` (but those named in `exclude`), with its help, choices
    and default from the field."""
    types = typing.get_type_hints(ModelConfig)
    for knob in fields_of(name):
        if knob.name in exclude:
            continue
        kind, options = types[knob.name], {"help": knob.metadata["help"]}
        if kind is not bool and knob.default is not None:
            options["help"] += " (default: %(default)s)"
        if kind is bool:
            options["action"] = "store_true"
        elif typing.get_origin(kind) is tuple:
            options.update(type=typing.get_args(kind)[0], nargs=knob.metadata.get("nargs", "*"),
                           default=list(knob.default))
        else:
            scalar = [t for t in typing.get_args(kind) if t is not type(None)] or [kind]
            options.update(type=scalar[0], default=knob.default)
        options.update({k: knob.metadata[k] for k in ("choices", "metavar") if k in knob.metadata})
        group.add_argument(flag_of(knob), **options)


def add_preprocessing_arguments(parser: argparse.ArgumentParser) -> None:
    prep = parser.add_argument_group("preprocessing and features (defaults: the reference design)")
    add_config_arguments(prep, PREPROCESSING)
    add_config_arguments(prep, FEATURES)


def examples_from_args(args: argparse.Namespace) -> list[Example]:
    """Scan the data folder and merge exported corrections (model.data.merge_corrections) into one list."""
    examples = scan_folder(args.data, positive=args.positive)
    return merge_corrections(Split(examples, [], []), args.feedback).train if args.feedback else examples


def split_from_args(args: argparse.Namespace, evaluation: Sequence[Example] = ()) -> Split:
    """The examples split by patient on their own labels, --extra-train added to train, each --extra-split folder
    split by patient and added part to part, then the --feedback
    corrections merged (none of an `evaluation` image trains), with the counts logged; training, the search and
    python -m model.data all take their examples from here."""
    split = split_by_patient(scan_folder(args.data, positive=args.positive), args.val_fraction, args.test_fraction,
                             args.seed)
    if args.extra_train:
        extra = scan_folder(args.extra_train, positive=args.positive, require_both=False)[: args.extra_limit]
        split = Split(split.train + extra, split.validation, split.test)
    for folder in getattr(args, "extra_split", []):
        extra = split_by_patient(scan_folder(folder, positive=args.positive, require_both=False), args.val_fraction,
                                 args.test_fraction, args.seed)
        split = Split(*(mine + theirs for mine, theirs in zip(split.parts().values(), extra.parts().values())))
    if args.feedback:
        split = merge_corrections(split, args.feedback, evaluation)
    log.info(describe_split(split))
    if split.corrections:
        log.info(split.corrections.describe())
    return split


def reference_from_args(args: argparse.Namespace, split: Split) -> list[Example]:
    """The --reference-normals images whose files are in no part of the split ([] without the flag); a usage error where
    the operating point needs them and there are none, or where one is not a negative."""
    if not args.reference_normals:
        if args.operating_point == UNSEEN_SOURCES:
            raise UsageError("--operating-point unseen_sources needs --reference-normals DIR")
        return []
    used = {file_sha256(e.path) for part in (split.train, split.validation, split.test) for e in part}
    reference = [e for e in scan_folder(args.reference_normals, positive=args.positive, require_both=False)
                 if file_sha256(e.path) not in used]
    if not reference or any(e.label for e in reference):
        raise UsageError(f"--reference-normals {args.reference_normals}: needs negative films only, none of them in "
                         "the data")
    log.info("%d reference normals from %s (not in the split)", len(reference), args.reference_normals)
    return reference


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
    add_config_arguments(head, HEAD)


def add_fine_tune_arguments(parser: argparse.ArgumentParser) -> None:
    """The fine-tuning stage's flags (ModelConfig's fine_tune_* fields: off unless --fine-tune-epochs)."""
    add_config_arguments(parser.add_argument_group("fine-tuning, after the head (off by default)"), FINE_TUNE)


def localiser_version(path: Path) -> str:
    """--lungs FILE: load that lung localiser for the preprocessing to run, and name it by its version."""
    from model.lungs import LocaliserError, load_localiser
    from model.preprocessing import use_localiser

    try:
        localiser = load_localiser(path)
    except LocaliserError as error:
        raise UsageError(f"--lungs {path}: {error}") from None
    use_localiser(localiser)
    return localiser.version


def config_from_args(args: argparse.Namespace) -> ModelConfig:
    """The ModelConfig the flags describe (each field from its flag, where the command has it, the others at their
    defaults); --hparams, where the command has it, replaces
    the head and preprocessing settings, never the base weights, the size, the seed or fine-tuning (nor a
    --target-sensitivity given on the command line)."""
    given = {knob.name: getattr(args, dest_of(knob)) for knob in dataclasses.fields(ModelConfig)
             if hasattr(args, dest_of(knob))}
    if given.get("lungs"):
        given["lungs"] = localiser_version(Path(given["lungs"]))
    if getattr(args, "hparams", None):
        if not args.hparams.is_file():
            raise UsageError(f"--hparams {args.hparams}: no such file")
        kept = {name: given[name] for name in ("input_size", "weights", "seed")}
        kept |= {knob.name: given[knob.name] for knob in fields_of(FINE_TUNE) if knob.name in given}
        if given["target_sensitivity"] is not None:
            kept["target_sensitivity"] = given["target_sensitivity"]
        saved = json.loads(args.hparams.read_text())
        return ModelConfig.from_dict({**saved.get("hyperparameters", saved), **kept})
    return ModelConfig.from_dict(given)
