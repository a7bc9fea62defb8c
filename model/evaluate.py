"""Evaluate a saved model on any labelled folder: python -m model.evaluate --model PATH --data DIR [--out DIR].

Every image in the folder is scored at the model card's threshold; the report (Markdown, JSON, ROC and
confusion-matrix plots) goes to --out. Base features are cached by the base's weights, so a rerun (or a model whose frozen base
was trained here) starts at once.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from model.architecture import BASE_NAME, head_of
from model.artifact import DEFAULT_ARTIFACT, load_artifact
from model.config import DEFAULT_POSITIVE_FOLDERS
from model.data import scan_folder
from model.evaluation import evaluate
from model.features import DEFAULT_CACHE, base_key, extract_features
from model.report import write_report
from model.training import Features, probabilities

SHOWN = ("n", "auc", "auc_ci95", "sensitivity", "sensitivity_ci95", "specificity", "specificity_ci95", "f1", "accuracy", "loss")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_ARTIFACT, help="artifact folder or .keras file")
    parser.add_argument("--data", type=Path, required=True, help="folder with one sub-folder per class")
    parser.add_argument("--out", type=Path, default=Path("runs/evaluate"), help="report folder")
    parser.add_argument("--positive", nargs="+", default=list(DEFAULT_POSITIVE_FOLDERS), help="positive class folders")
    parser.add_argument("--threshold", type=float, default=None, help="override the model card's threshold")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="feature cache folder")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    model, card = load_artifact(args.model)
    threshold = args.threshold if args.threshold is not None else float(card.get("threshold", 0.5))
    examples = scan_folder(args.data, positive=args.positive)
    base = model.get_layer(BASE_NAME)
    features, kept = extract_features(
        base, [e.path for e in examples], base_key(base), 0, None if args.no_cache else args.cache
    )
    examples = [examples[i] for i in kept]
    scored = Features(features, np.array([e.label for e in examples], dtype="float32"), examples)
    evaluation = evaluate(args.data.name or "data", scored.y, probabilities(head_of(model), scored), threshold,
                          [e.source for e in scored.examples])
    meta = {"model": str(args.model), "model_version": card.get("version", "unknown"), "data": str(args.data),
            "threshold": threshold, "threshold_rule": card.get("threshold_rule", "given")}
    write_report(args.out, [evaluation], None, meta)
    print(json.dumps({k: evaluation.metrics[k] for k in SHOWN}))
    for source, metrics in evaluation.metrics.get("per_source", {}).items():
        print(f"  {source}: " + json.dumps({k: metrics[k] for k in ("n", "auc", "sensitivity", "specificity")}))
    print(f"wrote {args.out / 'report.md'}")


if __name__ == "__main__":
    main()
