"""Train a saved model's input gate: python -m model.train_gate --model DIR --data DEV --ood OOD [options].

Run it last, on the final network (after any fine-tuning): the gate reads that network's features. In scope are
the --data films of the model's own training split (same patients, fractions and seed as training) and
--extra-train films; out of scope the --ood folder's kinds (split by patient, OOD_HELD_OUT held out) and made
photos and documents. The test split, the held-out out-of-scope patients and made images, and --external (never
trained on) measure it. Writes DIR/gate.npz, records the gate in DIR/model_card.json and writes
DIR/reports/gate/report.md. The model's version (its network file) does not change; the gate has its own.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from model.artifact import CARD_FILE, DEFAULT_ARTIFACT
from model.commands.cli import (
    Parser,
    add_data_arguments,
    cache_from_args,
    check_inputs,
    precision_from_args,
    run,
    setup_logging,
    split_from_args,
    start_tensorflow,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = Parser(prog="python -m model.train_gate", description=__doc__)
    parser.add_argument("--model", type=Path, default=DEFAULT_ARTIFACT, help="artifact folder (default: the app's)")
    parser.add_argument("--ood", type=Path, required=True, help="out-of-scope folder (MANIFEST.csv: file, kind, patient_id)")
    parser.add_argument("--external", type=Path, default=None, help="labelled folder to report false refusals on")
    add_data_arguments(parser)
    parser.set_defaults(views=None)  # the gate's own number of views (model.training.gate_fit.VIEWS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = parse_args(argv)
    if not args.model.is_dir():
        raise NotADirectoryError(f"--model must be an artifact folder (with {CARD_FILE}), got {args.model}")
    check_inputs(args)
    split = split_from_args(args)
    start_tensorflow(args.verbose)
    from model.training.gate_fit import VIEWS, gate_artifact

    record = gate_artifact(args.model, split, args.ood, args.external, args.positive, cache_from_args(args),
                           precision_from_args(args), VIEWS if args.views is None else args.views)
    print(json.dumps({name: round(row["share"], 3) for name, row in record["refused"].items()}))
    print(f"wrote {args.model / 'gate.npz'}, the gate in {args.model / CARD_FILE} and {args.model / 'reports/gate'}")
    return 0

