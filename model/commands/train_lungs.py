"""Train the lung localiser: python -m model.train_lungs --data ../shared/data/lungs --out model/localiser.

Fits the small U-Net of model/training/lungs_fit.py on the lung-mask pairs of the patients it does not hold out,
and measures its Dice on the held-out patients (adults and children apart, as they are and framed). Writes
OUT/lungs.keras (what --lungs FILE and the artifact's preprocessing load) and OUT/report.json and report.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from model.commands.cli import (
    Parser,
    UsageError,
    add_cache_arguments,
    cache_from_args,
    check_inputs,
    log,
    run,
    setup_logging,
    start_tensorflow,
)
from model.markdown import table
from model.precision import cpu_model
from model.progress import duration
from model.training.lungs_fit import (
    EPOCHS,
    HELD_OUT,
    SIZE,
    as_localiser,
    cached_pairs,
    fit_unet,
    held_out_dice,
    read_pairs,
    save_network,
    split_patients,
)

DEFAULT_OUT = Path(__file__).resolve().parent / "localiser"
LOCALISER_FILE = "lungs.keras"
LICENCE = ("Trained on ../shared/data/lungs: masks by V7 Labs (CC BY 4.0); children's films Kermany et al. 2018 "
           "(CC BY 4.0); adult films from the COVID-19 image data collection (Cohen et al.), most of them CC BY-NC-SA "
           "(non-commercial, share-alike; a few CC BY / CC BY-SA): the weights are a derivative of non-commercial "
           "images, so use them under CC BY-NC-SA terms.")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = Parser(prog="python -m model.train_lungs", description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="lung-mask folder (MANIFEST.csv, images/, masks/)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="training epochs (default: %(default)s)")
    parser.add_argument("--held-out", type=float, default=HELD_OUT,
                        help="share of each kind's patients held out for the Dice report (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="split and training seed (default: %(default)s)")
    add_cache_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = parse_args(argv)
    check_inputs(args)
    if not (args.data / "MANIFEST.csv").is_file():
        raise UsageError(f"--data {args.data}: no MANIFEST.csv, not the lung-mask folder (../shared/data/lungs)")
    if args.epochs < 1 or not 0 < args.held_out < 1:
        raise UsageError("--epochs must be at least 1 and --held-out between 0 and 1")
    start_tensorflow(args.verbose)
    pairs = cached_pairs(args.data, cache_from_args(args))
    train, test = split_patients(pairs, args.held_out, args.seed)
    log.info("lung localiser: %d films of %d patients to train on, %d of %d held out", len(train),
             len({p.patient for p in train}), len(test), len({p.patient for p in test}))
    start = time.monotonic()
    network = fit_unet(train, args.epochs, args.seed)
    seconds = time.monotonic() - start
    held = {p.name for p in test}
    localiser = as_localiser(network)
    dice = held_out_dice(localiser, [p for p in read_pairs(args.data) if p.name in held])
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / LOCALISER_FILE
    save_network(network, path)
    report = {
        "version": localiser.version, "file": LOCALISER_FILE, "file_bytes": path.stat().st_size,
        "input_size": SIZE, "parameters": int(network.count_params()),
        "weights_bytes": int(sum(w.nbytes for w in network.get_weights())),
        "epochs": args.epochs, "seed": args.seed, "training_seconds": round(seconds, 1), "cpu": cpu_model(),
        "held_out_dice": dice, "split": _split_record(train, test), "licence": LICENCE,
    }
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "report.md").write_text(_markdown(report))
    print(json.dumps({kind: round(row["dice_mean"], 3) for kind, row in dice.items()}))
    print(f"wrote {path} (lung localiser {localiser.version}) and {args.out / 'report.md'}")
    return 0


def _split_record(train, test) -> dict:
    """Films and patients per kind on each side, and the held-out patients by name."""
    def side(part) -> dict:
        return {kind: {"films": sum(p.kind == kind for p in part),
                       "patients": len({p.patient for p in part if p.kind == kind})}
                for kind in sorted({p.kind for p in part})}

    return {"train": side(train), "held_out": side(test), "held_out_patients": sorted({p.patient for p in test})}


def _markdown(report: dict) -> str:
    dice = report["held_out_dice"]
    rows = [(kind, row["films"], row["patients"], row["dice_mean"], row["dice_median"], row["dice_min"],
             row["framed_dice_mean"], row["inverted_lung_share"]) for kind, row in dice.items()]
    split = report["split"]
    sizes = [(kind, split["train"][kind]["films"], split["train"][kind]["patients"],
              split["held_out"][kind]["films"], split["held_out"][kind]["patients"]) for kind in split["train"]]
    lines = [
        f"# Lung localiser {report['version']}", "",
        f"A U-Net with {report['parameters']:,} parameters ({report['weights_bytes'] / 2**10:.0f} KiB of weights, "
        f"file {report['file_bytes'] / 2**10:.0f} KiB) on {report['input_size']} x {report['input_size']} grey "
        f"input, trained {report['epochs']} epochs in {duration(report['training_seconds'])} on "
        f"{report['cpu']}.", "",
        "## Dice on held-out patients", "",
        "At each film's own size, the map thresholded at 0.5; *framed*: each film once with a random border or "
        "letterbox, crop and rotation, at the network's size; *inverted*: the share of each inverted film the map "
        "calls lung (the localiser is trained to find no lungs there, which is how polarity is told).", "",
        *table(("kind", "films", "patients", "Dice mean", "median", "min", "framed mean", "inverted: lung share"),
               rows), "",
        "## Split (by patient, per kind)", "",
        *table(("kind", "train films", "train patients", "held-out films", "held-out patients"), sizes), "",
        "## Licence", "", report["licence"], "",
    ]
    return "\n".join(lines)

