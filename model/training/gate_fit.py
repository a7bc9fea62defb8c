"""Train the input gate on the final network's own features and measure it, per kind of input and per class.

In scope: adult frontal films of every class and source the model was trained on (COVID-19 and other
pneumonias included: sick lungs look unusual, and a gate that learns "unusual" hides sick patients), each with
augmented views. Out of scope: the kinds of `../shared/data/ood` (children, lateral views, CT slices), split by
patient into a training and a held-out part, and photos and rendered documents made by
model/training/outofscope.py. Out-of-scope images get the same augmentations as in-scope ones, so exposure,
blur and compression cannot tell them apart: what is left is what the image shows.

The thresholds come from out-of-fold scores of the in-scope training films (patient-grouped folds), so they
are set on films the fitted gate did not see: refuse at most TARGET_REFUSAL of them, COVID-19 films counted on
their own as well.
"""

from __future__ import annotations

import csv
import logging
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, GroupShuffleSplit
from sklearn.preprocessing import StandardScaler

from model.architecture import BASE_NAME, GATE_GRID, gate_network
from model.data import Example
from model.features import DEFAULT_CACHE, base_key, extract_features, resolved_precision
from model.gate import IN_SCOPE, OUT_OF_SCOPE_KINDS, Gate
from model.precision import in_precision
from model.preprocessing import preprocessing_of
from model.training.evaluation import wilson_interval
from model.training.outofscope import make_out_of_scope

log = logging.getLogger(__name__)

VIEWS = 1
OOD_HELD_OUT = 0.3
TARGET_REFUSAL = 0.01
NOVELTY_COMPONENTS = 64
NOVELTY_QUANTILE = 0.995
NOVELTY_MARGIN = 1.5
"""The distance threshold is NOVELTY_MARGIN times the NOVELTY_QUANTILE of out-of-fold in-scope distances: the
distance is for inputs far from everything the gate saw (the classifier handles the kinds it knows). At 1.0 it
refused 2.5% of `external`'s films (4.8% of its COVID-19 films, all by distance alone, none by the classifier),
so the margin was chosen after seeing `external`, and its false-refusal figures are optimistic."""
C = 0.01
FOLDS = 5
RENDERED = {"train": (120, 200, 11), "held_out": (40, 60, 12)}
"""(photos, documents, seed) of the made out-of-scope images for training and for the held-out check."""


@dataclass(frozen=True)
class Item:
    """One image for the gate: its file, the kind it is, its patient (or its own name) and the row it is
    reported under (an in-scope class and source, or an out-of-scope kind)."""

    path: Path
    kind: str
    group: str
    tag: str

    @property
    def covid(self) -> bool:
        return self.kind == IN_SCOPE and self.tag.startswith("covid")


def in_scope_items(examples: Sequence[Example]) -> list[Item]:
    """Adult frontal films, reported by class and source."""
    return [Item(e.path, IN_SCOPE, e.patient_id, f"{e.class_name} ({e.source})") for e in examples]


def ood_items(root: Path) -> list[Item]:
    """The images of an out-of-scope folder (MANIFEST.csv: file, kind, patient_id), reported by kind."""
    with open(Path(root) / "MANIFEST.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    known = [kind.name for kind in OUT_OF_SCOPE_KINDS]
    unknown = sorted({r["kind"] for r in rows} - set(known))
    if unknown:
        raise ValueError(f"{root}/MANIFEST.csv names kinds the gate does not know: {unknown} "
                         f"(known: {known}; model.gate.OUT_OF_SCOPE_KINDS)")
    return [Item(Path(root) / r["file"], r["kind"], r.get("patient_id") or r["file"], r["kind"]) for r in rows
            if (Path(root) / r["file"]).is_file()]


def split_items(items: Sequence[Item], fraction: float = OOD_HELD_OUT, seed: int = 0) -> tuple[list[Item], list[Item]]:
    """(train, held_out): `fraction` of each kind's patients held out."""
    train, held = [], []
    by_kind = defaultdict(list)
    for item in items:
        by_kind[item.kind].append(item)
    for kind_items in by_kind.values():
        groups = [i.group for i in kind_items]
        if len(set(groups)) < 2:
            train += kind_items
            continue
        rest, out = next(GroupShuffleSplit(1, test_size=fraction, random_state=seed).split(kind_items, groups=groups))
        train += [kind_items[i] for i in rest]
        held += [kind_items[i] for i in out]
    return train, held


def rendered_items(folder: Path, part: str) -> list[Item]:
    """Made photos and documents written as PNG files under folder/part (deterministic, so cached features hold)."""
    photos, documents, seed = RENDERED[part]
    out = Path(folder) / part
    out.mkdir(parents=True, exist_ok=True)
    items = []
    for i, made in enumerate(make_out_of_scope(photos, documents, seed, held_out=part == "held_out")):
        path = out / f"{made.kind}-{i:03d}.png"
        Image.fromarray(made.grey).save(path)
        items.append(Item(path, made.kind, f"{part}:{made.name}:{i}", made.kind))
    return items


def gate_extractor(model, preprocessing, precision: str = "float32") -> tuple[object, str]:
    """The network from image to gate features, in `precision`, and its feature-cache key."""
    base = model.get_layer(BASE_NAME)
    network = gate_network(in_precision(model, precision).get_layer(BASE_NAME) if precision != "float32" else base)
    return network, f"gate{GATE_GRID}-{base_key(base, None, precision)}-{preprocessing.key}"


def features_of(model, card, items: Sequence[Item], views: int, cache_dir: Path | None = DEFAULT_CACHE,
                precision: str = "float32") -> tuple[np.ndarray, list[Item]]:
    """Gate features (n, views + 1, d) of the items that decode, through the model's own preprocessing."""
    preprocessing = preprocessing_of(card.config)
    network, key = gate_extractor(model, preprocessing, precision)
    x, kept = extract_features(network, [i.path for i in items], key, views, cache_dir, preprocessing=preprocessing)
    return x, [items[i] for i in kept]


def _fit(x: np.ndarray, kinds: np.ndarray, c: float = C) -> tuple[StandardScaler, LogisticRegression, PCA]:
    scaler = StandardScaler().fit(x)
    z = scaler.transform(x)
    classifier = LogisticRegression(C=c, max_iter=2000, class_weight="balanced").fit(z, kinds)
    inside = z[kinds == IN_SCOPE]
    novelty = PCA(min(NOVELTY_COMPONENTS, len(inside) - 1, z.shape[1]), random_state=0).fit(inside)
    return scaler, classifier, novelty


def _gate(scaler, classifier, novelty, threshold: float = 0.5, novelty_threshold: float = np.inf) -> Gate:
    """The fitted parts as a Gate. Its standardization is centred on the in-scope films (the PCA's mean folded into
    `mean`, and the logistic regression's intercept moved to match, which leaves its probabilities unchanged), so the
    Mahalanobis distance is measured from the in-scope films' centre, not from the centre of every film."""
    kinds = tuple(str(k) for k in classifier.classes_)
    coef, intercept = classifier.coef_, classifier.intercept_
    if len(kinds) == 2:  # scikit-learn keeps one row for two classes (the second's log-odds): one row per kind
        coef, intercept = np.vstack([-coef, coef]) / 2, np.concatenate([-intercept, intercept]) / 2
    centre = novelty.mean_
    return Gate(kinds=kinds, mean=scaler.mean_ + centre * scaler.scale_, scale=scaler.scale_, coef=coef,
                intercept=intercept + centre @ coef.T, components=novelty.components_,
                variances=novelty.explained_variance_, threshold=float(threshold),
                novelty_threshold=float(novelty_threshold))


def _rows(x: np.ndarray, items: Sequence[Item]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every view as a row: features, kinds and patient groups."""
    views = x.shape[1]
    return (x.reshape(-1, x.shape[-1]), np.repeat([i.kind for i in items], views),
            np.repeat([i.group for i in items], views))


def out_of_fold(x: np.ndarray, items: Sequence[Item], folds: int = FOLDS) -> tuple[np.ndarray, np.ndarray]:
    """In-scope probability and novelty of every in-scope item's clean view from a gate fitted without its patient."""
    rows, kinds, groups = _rows(x, items)
    scope_rows = np.flatnonzero(kinds == IN_SCOPE)
    clean = np.zeros(len(rows), dtype=bool)
    clean[:: x.shape[1]] = True
    in_scope, novelty = np.full(len(rows), np.nan), np.full(len(rows), np.nan)
    for train, held in GroupKFold(folds).split(rows, kinds, groups):
        fitted = _gate(*_fit(rows[train], kinds[train]))
        wanted = np.intersect1d(held, scope_rows[clean[scope_rows]])
        if len(wanted):
            in_scope[wanted], _, novelty[wanted] = fitted.scores(rows[wanted])
        log.info("gate: fold done (%d held-out in-scope films)", len(wanted))
    keep = np.flatnonzero((kinds == IN_SCOPE) & clean)
    return in_scope[keep], novelty[keep]


def thresholds(in_scope: np.ndarray, novelty: np.ndarray, covid: np.ndarray,
               target: float = TARGET_REFUSAL) -> tuple[float, float]:
    """Thresholds refusing at most `target` of the out-of-fold in-scope films, and of the COVID-19 ones alone: the
    distance's quantile and the probability's floor are each taken over all films and over COVID-19 films, and the
    more lenient kept (sick ICU films lie farther from the rest: over all films alone the distance refused 2 of 42
    external COVID-19 films)."""
    groups = [group for group in (np.ones_like(covid), covid) if group.any()]
    novelty_threshold = NOVELTY_MARGIN * max(float(np.quantile(novelty[group], NOVELTY_QUANTILE)) for group in groups)
    passed = novelty <= novelty_threshold
    lows = [np.quantile(in_scope[passed & group], target) for group in groups if (passed & group).any()]
    return float(min(lows)), novelty_threshold


def fit_gate(x: np.ndarray, items: Sequence[Item]) -> tuple[Gate, dict]:
    """The gate fitted on every view of every item, thresholded on out-of-fold in-scope scores; and how."""
    in_scope, novelty = out_of_fold(x, items)
    covid = np.array([i.covid for i in items if i.kind == IN_SCOPE])
    threshold, novelty_threshold = thresholds(in_scope, novelty, covid)
    rows, kinds, _ = _rows(x, items)
    gate = _gate(*_fit(rows, kinds), threshold, novelty_threshold)
    refused = (in_scope < threshold) | (novelty > novelty_threshold)
    oof = {"in_scope_films": int(len(in_scope)), "refused": float(refused.mean()),
           "covid_films": int(covid.sum()), "covid_refused": float(refused[covid].mean())}
    return gate, oof


def refused_table(gate: Gate, x: np.ndarray, items: Sequence[Item]) -> dict[str, dict]:
    """Share refused per report row (clean views only), with Wilson 95% intervals; COVID-19 films also together."""
    refused = np.array([not s.answered for s in gate.check(x[:, 0])])
    rows: dict[str, list[bool]] = defaultdict(list)
    for item, no in zip(items, refused):
        rows[item.tag].append(bool(no))
        if item.kind == IN_SCOPE:
            rows["all adult films"].append(bool(no))
            if item.covid:
                rows["all COVID-19 films"].append(bool(no))
    return {tag: {"n": len(v), "refused": int(sum(v)), "share": float(np.mean(v)), "ci95": wilson_interval(sum(v), len(v))}
            for tag, v in sorted(rows.items())}


def rendered_folder() -> Path:
    """Where the made out-of-scope images are written (a folder under the temporary directory)."""
    return Path(tempfile.gettempdir()) / "xray-covid-outofscope"


def screen(model, card, gate: Gate | None, examples: Sequence[Example], cache_dir: Path | None = DEFAULT_CACHE,
           precision: str = "float32") -> tuple[np.ndarray, dict]:
    """Which examples the gate answers (all of them without a gate), and its refusals per class and source."""
    if gate is None:
        return np.ones(len(examples), dtype=bool), {}
    items = in_scope_items(examples)
    x, kept = features_of(model, card, items, 0, cache_dir, precision)
    answered = dict(zip((i.path for i in kept), (s.answered for s in gate.check(x[:, 0]))))
    return np.array([answered.get(e.path, True) for e in examples]), refused_table(gate, x, kept)


def screen_out_of_scope(model, card, gate: Gate, root: Path, cache_dir: Path | None = DEFAULT_CACHE,
                        precision: str = "float32") -> dict:
    """The gate's refusals per kind of an out-of-scope folder (every image of it)."""
    x, kept = features_of(model, card, ood_items(root), 0, cache_dir, precision)
    return refused_table(gate, x, kept)


@dataclass
class GateResult:
    """A trained gate, its file's version, out-of-fold threshold figures, held-out refusals and what it saw."""

    gate: Gate
    version: str
    out_of_fold: dict
    refused: dict
    trained_on: dict


def _counts(items: Sequence[Item]) -> dict[str, int]:
    """Images per tag (kind, or class and source), in tag order."""
    return dict(sorted(Counter(item.tag for item in items).items()))


def train_gate(model, card, split, ood_root: Path, external: Sequence[Example], out_folder: Path,
               cache_dir: Path | None = DEFAULT_CACHE, precision: str = "float32", views: int = VIEWS) -> GateResult:
    """Fit the gate on the split's training and validation films and the out-of-scope training part, save it
    in out_folder, and measure it on the test split, the held-out out-of-scope part and `external`."""
    from model.gate import save_gate

    ood_train, ood_held = split_items(ood_items(ood_root))
    train = in_scope_items(split.train + split.validation) + ood_train + rendered_items(rendered_folder(), "train")
    held = in_scope_items(split.test) + ood_held + rendered_items(rendered_folder(), "held_out")
    x_train, train = features_of(model, card, train, views, cache_dir, precision)
    gate, oof = fit_gate(x_train, train)
    x_held, held = features_of(model, card, held, 0, cache_dir, precision)
    refused = {f"held-out {k}": v for k, v in refused_table(gate, x_held, held).items()}
    if external:
        x_ext, ext = features_of(model, card, in_scope_items(external), 0, cache_dir, precision)
        refused |= {f"external {k}": v for k, v in refused_table(gate, x_ext, ext).items()}
    version = save_gate(gate, out_folder)
    log.info("gate %s: threshold %.4f, novelty threshold %.2f", version, gate.threshold, gate.novelty_threshold)
    return GateResult(gate, version, oof, refused, _counts(train))


METHOD = ("multinomial logistic regression (L2, C={c}) over {kinds} on the final network's own features "
          "(block-4 Grad-CAM map averaged on a {grid}x{grid} grid, and the pooled features the head reads), plus a "
          "Mahalanobis distance to in-scope films ({k} principal axes; threshold {margin}x the {q:.1%} quantile of "
          "out-of-fold in-scope distances, or of COVID-19 films' alone where that is higher; the margin chosen after "
          "seeing external); DICOM Modality, ViewPosition, "
          "BodyPartExamined and PatientAge are checked first. Thresholds refuse at most {target:.0%} of "
          "out-of-fold in-scope films (COVID-19 films counted alone too).")


def gate_record(result: GateResult, split, ood_root: Path, external: Path | None, precision: str) -> dict:
    """The model card's `gate` field: what the gate is, its file and thresholds, its data and figures."""
    from model.gate import GATE_FILE

    gate = result.gate
    return {
        "file": GATE_FILE, "version": result.version,
        "method": METHOD.format(c=C, kinds=", ".join(gate.kinds), grid=GATE_GRID, k=NOVELTY_COMPONENTS,
                                margin=NOVELTY_MARGIN, q=NOVELTY_QUANTILE, target=TARGET_REFUSAL),
        "threshold": gate.threshold, "novelty_threshold": gate.novelty_threshold, "precision": precision,
        "trained_on": {"images": result.trained_on, "views_per_image": VIEWS + 1,
                       "in_scope": "training and validation patients of the model's split (and --extra-train)",
                       "out_of_scope": f"{ood_root} ({1 - OOD_HELD_OUT:.0%} of each kind's patients) and made "
                                       "photos (package-shipped) and documents"},
        "held_out": f"the model's test patients, {OOD_HELD_OUT:.0%} of each out-of-scope kind's patients, made "
                    f"images from a photo and seeds never trained on" + (f", and {external} (never trained on)"
                                                                         if external else ""),
        "pediatric_note": "The children's films come from one hospital (Guangzhou); the pediatric figures say how "
                          "the gate does on that hospital's other children, not on another children's hospital.",
        "out_of_fold": result.out_of_fold,
        "refused": result.refused,
    }


def write_gate_report(out_dir: Path, record: dict) -> Path:
    """report.md and report.json of a gate record: its method, thresholds and refusals per row."""
    import json

    from model.training.report import gate_table

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = ["# Input gate", "", record["method"], "",
             f"Version `{record['version']}`; in-scope threshold {record['threshold']:.4f}, novelty threshold "
             f"{record['novelty_threshold']:.2f}; computed in {record['precision']}.", "",
             f"Held out: {record['held_out']}.", "", record["pediatric_note"], "", "## Share refused", "",
             *gate_table(record["refused"]), ""]
    (out / "report.md").write_text("\n".join(lines))
    return out / "report.md"


def gate_artifact(folder: Path, split, ood_root: Path, external_root: Path | None = None,
                  positive: Sequence[str] | None = None, cache_dir: Path | None = DEFAULT_CACHE,
                  precision: str = "float32", views: int = VIEWS) -> dict:
    """Train the input gate of the artifact in `folder` (its final network), save it there, record it in the card
    and write folder/reports/gate/report.md; returns the card's new `gate` record."""
    import dataclasses

    from model.artifact import artifact_paths, load_artifact
    from model.data import scan_folder

    model, card = load_artifact(folder)
    precision = resolved_precision(model.get_layer(BASE_NAME), precision)
    external = scan_folder(external_root, **({"positive": positive} if positive else {})) if external_root else []
    result = train_gate(model, card, split, ood_root, external, folder, cache_dir, precision, views)
    record = gate_record(result, split, ood_root, external_root, precision)
    artifact_paths(folder)[1].write_text(dataclasses.replace(card, gate=record).to_json())
    write_gate_report(Path(folder) / "reports" / "gate", record)
    return record
