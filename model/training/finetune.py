"""The one fine-tuning step: unfreeze the base, train end to end, and featurize the held-out parts again."""

from __future__ import annotations

from model.architecture import BASE_NAME, assemble, compile_model
from model.config import ModelConfig
from model.data import make_dataset
from model.features import SplitFeatures, featurize
from model.preprocessing import preprocessing_of


def fine_tune(base, head, sets: SplitFeatures, config: ModelConfig, epochs: int, learning_rate: float = 1e-5,
              verbose: int = 2) -> tuple[SplitFeatures, dict]:
    """Train base and head together on the training images at a low learning rate (slow on a CPU).

    The base's weights change, so cached features no longer describe it: every part is featurized again
    (uncached, clean views only). Returns (the new features, history with fine_tune_ prefixes).
    """
    model = assemble(base, head)
    model.get_layer(BASE_NAME).trainable = True
    compile_model(model, "sgd_momentum", learning_rate)
    size = preprocessing_of(config)
    train, validation = sets.train.examples, sets.validation.examples
    history = model.fit(
        make_dataset(train, size, config.batch_size, augment_images=True, shuffle=True, seed=config.seed),
        validation_data=make_dataset(validation, size, config.batch_size) if validation else None,
        epochs=epochs,
        verbose=verbose,
    )
    model.get_layer(BASE_NAME).trainable = False
    refeaturized = SplitFeatures(**{name: featurize(base, "", part.examples, 0, None, preprocessing=size)
                                    for name, part in sets.parts().items()})
    return refeaturized, {f"fine_tune_{k}": v for k, v in history.history.items()}
