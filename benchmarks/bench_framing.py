"""How much the framing of a film changes the answer: every film of external/ and the gate's held-out out-of-scope
films, each as it is and framed the ways users frame films (model/framing.py: borders, screens, a crop, inverted).

Run from the repository root with ../shared beside the checkout:
`python -m benchmarks.bench_framing [--model DIR] [--precision auto] [--external DIR] [--ood DIR] [--json OUT]`.
Per framing it prints: the share of films whose decision changes among those answered both ways, the share
refused among those answered unframed, and the AUC (a refused COVID-19 film counts as not found, a refused
negative as not called positive); per out-of-scope kind, the share still refused. The out-of-scope films are the
patients the gate held out from its fit (model/training/gate_fit.py: split_items), so none of them trained it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED = Path("../shared/data")
BATCH = 8
UNFRAMED = "as it is"


def predict_all(predictor, greys: list[np.ndarray]) -> list:
    """Predictions of decoded greys in batches of BATCH."""
    out = []
    for start in range(0, len(greys), BATCH):
        out += predictor.predict_greys(greys[start : start + BATCH])
    return out


def auc(labels: list[int], scores: list[float]) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if len(set(labels)) == 2 else float("nan")


def score(prediction) -> float:
    """The probability that ranks a film for the AUC; a refused film ranks below every answered one."""
    return prediction.probability if prediction.answered else -1.0


def framing_rows(films: list[tuple[np.ndarray, int]], predictor, framings: dict) -> list[dict]:
    """One row per framing of in-scope films: changed decisions, refusals, AUC."""
    from model.images import ImageError

    labels = [label for _, label in films]
    plain = predict_all(predictor, [grey for grey, _ in films])
    rows = [{"framing": UNFRAMED, "films": len(films), "changed": 0.0, "refused": _share([not p.answered for p in plain]),
             "auc": auc(labels, [score(p) for p in plain])}]
    for name, frame in framings.items():
        try:
            framed = predict_all(predictor, [frame(grey) for grey, _ in films])
        except ImageError as error:
            raise SystemExit(f"{name}: {error}") from None
        both = [(a, b) for a, b in zip(plain, framed) if a.answered and b.answered]
        answered = [b for a, b in zip(plain, framed) if a.answered]
        rows.append({
            "framing": name, "films": len(films),
            "changed": _share([a.positive != b.positive for a, b in both]),
            "refused": _share([not b.answered for b in answered]),
            "auc": auc(labels, [score(p) for p in framed]),
            "mean_shift": float(np.mean([b.probability - a.probability for a, b in both])) if both else float("nan"),
        })
    return rows


def refusal_rows(kinds: dict[str, list[np.ndarray]], predictor, framings: dict) -> list[dict]:
    """One row per out-of-scope kind: the share refused as it is and under each framing."""
    rows = []
    for kind, greys in sorted(kinds.items()):
        row = {"kind": kind, "films": len(greys),
               UNFRAMED: _share([not p.answered for p in predict_all(predictor, greys)])}
        for name, frame in framings.items():
            row[name] = _share([not p.answered for p in predict_all(predictor, [frame(g) for g in greys])])
        rows.append(row)
    return rows


def _share(flags: list[bool]) -> float:
    return float(np.mean(flags)) if flags else float("nan")


def external_films(folder: Path, positive) -> list[tuple[np.ndarray, int]]:
    from model.data import scan_folder
    from model.images import load_bytes, read_grey

    return [(read_grey(load_bytes(e.path)), e.label) for e in scan_folder(folder, positive=positive)]


def held_out_kinds(folder: Path) -> dict[str, list[np.ndarray]]:
    """The out-of-scope films of the gate's held-out patients, by kind."""
    from model.images import load_bytes, read_grey
    from model.training.gate_fit import ood_items, split_items

    kinds = defaultdict(list)
    for item in split_items(ood_items(folder))[1]:
        kinds[item.kind].append(read_grey(load_bytes(item.path)))
    return dict(kinds)


def main() -> None:
    from model.artifact import DEFAULT_ARTIFACT
    from model.config import DEFAULT_POSITIVE_FOLDERS
    from model.framing import FRAMINGS
    from model.markdown import table
    from model.precision import cpu_model
    from model.serving.predictor import load_predictor

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_ARTIFACT)
    parser.add_argument("--precision", default=None, help="float32, bfloat16 or auto (default: $XRAY_PRECISION, else auto)")
    parser.add_argument("--external", type=Path, default=SHARED / "external")
    parser.add_argument("--ood", type=Path, default=SHARED / "ood")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    for folder in (args.external, args.ood):
        if not folder.is_dir():
            raise SystemExit(f"{folder}: no such folder (run with ../shared beside the checkout)")

    start = time.time()
    predictor = load_predictor(args.model, precision=args.precision)
    films = external_films(args.external, DEFAULT_POSITIVE_FOLDERS)
    in_scope = framing_rows(films, predictor, FRAMINGS)
    out_of_scope = refusal_rows(held_out_kinds(args.ood), predictor, FRAMINGS)
    print(f"model {predictor.version}, precision {predictor.precision}, {cpu_model()}, {time.time() - start:.0f} s")
    print(f"\nexternal/ ({len(films)} films, {sum(label for _, label in films)} COVID-19): per framing\n")
    print("\n".join(table(["framing", "decision changed", "refused (answered as it is)", "AUC", "mean probability shift"],
                [[r["framing"], f"{r['changed']:.1%}", f"{r['refused']:.1%}", f"{r['auc']:.3f}",
                  f"{r.get('mean_shift', 0.0):+.3f}"] for r in in_scope])))
    names = [UNFRAMED, *FRAMINGS]
    print("\nout-of-scope films of the gate's held-out patients: share refused\n")
    print("\n".join(table(["kind", "films", *names],
                          [[r["kind"], str(r["films"]), *(f"{r[n]:.0%}" for n in names)] for r in out_of_scope])))
    if args.json:
        args.json.write_text(json.dumps({"model": predictor.version, "precision": predictor.precision,
                                         "cpu": cpu_model(), "external": in_scope, "out_of_scope": out_of_scope},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
