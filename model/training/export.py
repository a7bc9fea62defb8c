"""From a split to a saved model: featurize the split's parts, then threshold, evaluate once, save and report."""

from __future__ import annotations

from pathlib import Path

from model.architecture import assemble, build_base
from model.artifact import save_artifact
from model.card import new_card
from model.config import ModelConfig
from model.data import Split, dataset_summary
from model.features import DEFAULT_CACHE, Features, SplitFeatures, feature_network, featurize
from model.training.evaluation import Evaluation, evaluate, pick_threshold
from model.training.head import probabilities
from model.training.report import write_report


def prepare(split: Split, config: ModelConfig, views: int = 2, cache_dir: Path | None = DEFAULT_CACHE,
            precision: str = "float32") -> tuple[object, SplitFeatures]:
    """The (float32) base for `config` and the features, computed in `precision`, of each part of the split."""
    base = build_base(config.input_size, config.weights, config.seed)
    network, key = feature_network(base, precision)
    sets = SplitFeatures(
        train=featurize(network, key, split.train, views, cache_dir, config.seed),
        validation=featurize(network, key, split.validation, 0, cache_dir, config.seed),
        test=featurize(network, key, split.test, 0, cache_dir, config.seed),
    )
    return base, sets


def evaluate_features(name: str, head, features: Features, threshold: float) -> Evaluation:
    return evaluate(name, features.y, probabilities(head, features), threshold, [e.source for e in features.examples])


def finish(
    base,
    head,
    config: ModelConfig,
    sets: SplitFeatures,
    out_dir: Path,
    history: dict | None = None,
    target_sensitivity: float | None = None,
    meta: dict | None = None,
    notes: str = "",
) -> tuple[Path, list[Evaluation]]:
    """Threshold on validation, evaluate validation and test once, save the artifact and write the report."""
    val_probs = probabilities(head, sets.validation)
    threshold, rule = pick_threshold(sets.validation.y, val_probs, target_sensitivity)
    evaluations = [
        evaluate("validation", sets.validation.y, val_probs, threshold, [e.source for e in sets.validation.examples]),
        evaluate_features("test", head, sets.test, threshold),
    ]
    training_data = {name: dataset_summary(part.examples) for name, part in sets.parts().items() if part.examples}
    card = new_card(config, threshold, rule, training_data, {e.name: e.metrics for e in evaluations}, notes)
    path = save_artifact(assemble(base, head, trainable_base=False), Path(out_dir), card)
    write_report(Path(out_dir), evaluations, history, {"threshold_rule": rule, **(meta or {}), **_flat(config)})
    return path, evaluations


def _flat(config: ModelConfig) -> dict:
    return {k: (" ".join(map(str, v)) if isinstance(v, list) else v) for k, v in config.to_dict().items()}
