"""What the shipped model reads: where its Grad-CAM lies against the lung masks, and whether it tells COVID-19 from
other pneumonias on patients it never trained on.

Run from the repository root with ../shared beside the checkout:
`python -m benchmarks.bench_reading [--model DIR] [--precision float32] [--json OUT]`.
The model's split is rebuilt from its recipe (recipe.json: the search command's flags), so "never trained on" is
exact: the lungs/ films of patients outside its training part (its validation and test patients, and patients not
in dev/ at all), and the adult_pneumonia/ films of its validation and test patients.

Prints, for those lung films: the median share of Grad-CAM mass inside the lung mask, against the lungs' share of
the region the network saw (what a uniform map would score), and their ratio (goal >= 1.5); then the AUC of
COVID-19 films (the split's test patients and external/) against the held-out adult pneumonias, and within dev/
(COVID-19 against other pneumonias of the split's test patients), with the share of each set's COVID-19 films found
and of its negatives called positive at the card's threshold.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED = Path("../shared/data")


def recipe_split(model: Path):
    """The split the model's recipe made (its --data, --extra-train, --extra-split, seed and fractions)."""
    from model.commands.cli import split_from_args
    from tuning.__main__ import parse_args
    from tuning.recipe import RECIPE_FILE

    if not (model / RECIPE_FILE).is_file():
        raise SystemExit(f"{model} has no {RECIPE_FILE}: this benchmark rebuilds the model's split from it")
    return split_from_args(parse_args(["--recipe", str(model), "--out", "/tmp/unused"]))


def mask_share(prediction, mask: np.ndarray) -> tuple[float, float]:
    """(share of the heatmap's mass inside the mask, the mask's share of the region the network saw)."""
    from PIL import Image

    top, left, bottom, right = prediction.crop_box
    inside = mask[top:bottom, left:right] > 127
    heat = np.asarray(Image.fromarray(prediction.heatmap.astype("float32"), mode="F").resize(
        (right - left, bottom - top), Image.Resampling.BILINEAR))
    total = float(heat.sum())
    return (float(heat[inside].sum()) / total if total > 0 else float("nan")), float(inside.mean())


def attention(predictor, lungs: Path, trained_patients: set[str]) -> dict:
    from model.images import load_bytes, read_grey

    with open(lungs / "MANIFEST.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["kind"] == "adult" and r["patient_id"] not in trained_patients]
    shares, uniform, answered = [], [], 0
    for row in rows:
        grey = read_grey(load_bytes(lungs / row["file"]))
        mask = read_grey(load_bytes(lungs / row["mask"]))
        prediction = predictor.predict_greys([grey])[0]
        answered += prediction.answered
        share, base = mask_share(prediction, mask)
        shares.append(share)
        uniform.append(base)
    shares, uniform = np.array(shares), np.array(uniform)
    return {"films": len(rows), "patients": len({r["patient_id"] for r in rows}), "answered": answered,
            "cam_share_median": float(np.nanmedian(shares)), "uniform_share_median": float(np.median(uniform)),
            "ratio_median": float(np.nanmedian(shares / uniform))}


def auc_of(predictor, positives: list[Path], negatives: list[Path]) -> dict:
    from sklearn.metrics import roc_auc_score

    from model.training.evaluation import bootstrap_auc_ci

    predictions = predictor.predict_many([*positives, *negatives])
    probs = [p.probability for p in predictions]
    labels = [1] * len(positives) + [0] * len(negatives)
    auc = float(roc_auc_score(labels, probs))
    called = [p.positive for p in predictions[len(positives):] if p.answered]
    found = [p.positive for p in predictions[: len(positives)] if p.answered]
    return {"positives": len(positives), "negatives": len(negatives), "auc": auc,
            "auc_ci95": bootstrap_auc_ci(np.array(labels), np.array(probs))[0],
            "sensitivity": float(np.mean(found)), "negatives_called_positive": float(np.mean(called))}


def main() -> None:
    from model.artifact import DEFAULT_ARTIFACT
    from model.data import scan_folder
    from model.serving.predictor import load_predictor

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_ARTIFACT)
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    split = recipe_split(args.model)
    predictor = load_predictor(args.model, precision=args.precision)
    trained = {e.patient_id for e in split.train}
    held = split.validation + split.test
    nih_pneumonia = [e.path for e in held if "adult_pneumonia" in str(e.path)]
    dev_pneumonia = [e.path for e in split.test if e.class_name == "other_pneumonia"]
    covid_test = [e.path for e in split.test if e.label]
    external_covid = [e.path for e in scan_folder(SHARED / "external") if e.label]
    figures = {
        "model": predictor.version,
        "lung_attention": attention(predictor, SHARED / "lungs", trained),
        "covid_vs_held_out_adult_pneumonia": auc_of(predictor, covid_test + external_covid, nih_pneumonia),
        "covid_vs_other_pneumonia_dev_test": auc_of(predictor, covid_test, dev_pneumonia),
    }
    print(json.dumps(figures, indent=2, default=float))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
