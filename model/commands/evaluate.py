"""Evaluate a saved model on any labelled folder: python -m model.evaluate --model PATH --data DIR [--out DIR].

Every image in the folder is scored at the model card's threshold (after the card's calibration, if any), on
the images the model's input gate answers; the report shows the share the gate refused per class and source
(and, with --ood DIR, per kind of an out-of-scope folder). The report (Markdown, JSON, ROC, reliability and confusion-matrix plots) goes to --out. Base features are cached by the base's weights, so a rerun (or a
model whose frozen base was trained here) starts at once.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from model.artifact import DEFAULT_ARTIFACT
from model.commands.cli import (
    Parser,
    add_cache_arguments,
    add_positive_argument,
    add_precision_argument,
    cache_from_args,
    check_inputs,
    precision_from_args,
    report_skipped,
    run,
    setup_logging,
    start_tensorflow,
)
from model.data import scan_folder

SHOWN = ("n", "auc", "auc_ci95", "sensitivity", "sensitivity_ci95", "specificity", "specificity_ci95", "f1", "accuracy", "loss")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = Parser(prog="python -m model.evaluate", description=__doc__)
    parser.add_argument("--model", type=Path, default=DEFAULT_ARTIFACT, help="artifact folder or .keras file")
    parser.add_argument("--data", type=Path, required=True, help="folder with one sub-folder per class")
    parser.add_argument("--out", type=Path, default=Path("runs/evaluate"), help="report folder")
    parser.add_argument("--threshold", type=float, default=None, help="override the model card's threshold")
    parser.add_argument("--ood", type=Path, default=None,
                        help="also report the input gate's refusals on this out-of-scope folder (MANIFEST.csv: file, kind)")
    add_positive_argument(parser)
    add_cache_arguments(parser)
    add_precision_argument(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = parse_args(argv)
    check_inputs(args)
    examples = scan_folder(args.data, positive=args.positive)
    start_tensorflow(args.verbose)
    from model.architecture import BASE_NAME
    from model.artifact import artifact_gate, load_artifact
    from model.features import resolved_precision
    from model.training.evaluation import evaluate
    from model.training.gate_fit import screen, screen_out_of_scope
    from model.training.report import write_report
    from model.training.scoring import score_saved
    from model.training.shortcut import shortcut_audit

    model, card = load_artifact(args.model)
    threshold = args.threshold if args.threshold is not None else card.threshold
    precision = resolved_precision(model.get_layer(BASE_NAME), precision_from_args(args))
    gate = artifact_gate(args.model, card)
    scored, probs = score_saved(model, card, examples, cache_from_args(args), precision)
    answered, refused = screen(model, card, gate, scored.examples, cache_from_args(args), precision)
    kept = [e for e, a in zip(scored.examples, answered) if a]
    evaluation = evaluate(args.data.name or "data", scored.y[answered], probs[answered], threshold,
                          [e.source for e in kept])
    evaluation.metrics["shortcut_audit"] = audit = shortcut_audit(kept, probs[answered])
    if gate is not None:
        ood = screen_out_of_scope(model, card, gate, args.ood, cache_from_args(args), precision) if args.ood else {}
        evaluation.metrics["input_gate"] = refused | ood
    meta = {"model": str(args.model), "model_version": card.version, "data": str(args.data), "threshold": threshold,
            "precision": precision,
            "threshold_rule": card.threshold_rule if args.threshold is None else "given with --threshold"}
    write_report(args.out, [evaluation], None, meta)
    print(json.dumps({k: evaluation.metrics[k] for k in SHOWN}))
    for source, metrics in evaluation.metrics.get("per_source", {}).items():
        print(f"  {source}: " + json.dumps({k: metrics[k] for k in ("n", "auc", "sensitivity", "specificity")}))
    print("shortcut audit (AUC from file facts only vs the model's): "
          + json.dumps({k: [v["file_facts_auc"], v["model_auc"]] for k, v in audit.items()}))
    if gate is None:
        print("input gate: none (no input check for this model)")
    else:
        print("input gate, share refused: " + json.dumps({k: round(v["share"], 3) for k, v in refused.items()}))
    print(f"wrote {args.out / 'report.md'}")
    return report_skipped(scored.skipped, len(examples))

