"""The one fine-tuning step: unfreeze the base, train end to end, and featurize the held-out parts again."""

from __future__ import annotations

from model.architecture import BASE_NAME, assemble, compile_model
from model.config import ModelConfig
from model.data import make_dataset
from model.features import SplitFeatures, featurize
from model.precision import in_precision
from model.preprocessing import preprocessing_of


def fine_tune(base, head, sets: SplitFeatures, config: ModelConfig, epochs: int, learning_rate: float = 1e-5,
              verbose: int = 2) -> tuple[SplitFeatures, dict]:
    """Train base and head together on the training images at a low learning rate (slow on a CPU), in the precision
    the features were computed in (a bfloat16 copy trains and its float32 weights are copied back).

    The base's weights change, so cached features no longer describe it: every part is featurized again
    (uncached, clean views only, same precision). Returns (the new features, history with fine_tune_ prefixes).
    """
    precision = sets.validation.precision
    model = assemble(base, head, trainable_base=True)
    trained = in_precision(model, precision)
    compile_model(trained, "sgd_momentum", learning_rate)
    size = preprocessing_of(config)
    train, validation = sets.train.examples, sets.validation.examples
    history = trained.fit(
        make_dataset(train, size, config.batch_size, augment_images=True, shuffle=True, seed=config.seed),
        validation_data=make_dataset(validation, size, config.batch_size) if validation else None,
        epochs=epochs,
        verbose=verbose,
    )
    if trained is not model:
        model.set_weights(trained.get_weights())
    model.get_layer(BASE_NAME).trainable = False
    network = in_precision(base, precision)
    refeaturized = SplitFeatures(**{name: featurize(network, "", part.examples, 0, None, preprocessing=size)
                                    for name, part in sets.parts().items()})
    return refeaturized, {f"fine_tune_{k}": v for k, v in history.history.items()}
