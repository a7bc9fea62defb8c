"""Fine-tuning, the stage after the head: unfreeze some base blocks, train them with the head from the images,
and featurize the held-out parts again. Its settings are ModelConfig's fine_tune_* fields (so the card records
them); it runs in the precision the features were computed in and can resume by epoch after an interruption."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import keras

from model.architecture import assemble, compile_model
from model.config import ModelConfig
from model.data import make_dataset
from model.features import Features, SplitFeatures, featurize
from model.precision import in_precision
from model.preprocessing import preprocessing_of
from model.progress import duration

log = logging.getLogger(__name__)


def unfreeze(base: keras.Model, blocks: tuple[str, ...]) -> None:
    """Make the layers of these VGG-16 blocks (block1_conv1, ..., block5_pool) trainable and the others frozen."""
    base.trainable = True
    for layer in base.layers:
        layer.trainable = layer.name.split("_")[0] in blocks


class EpochLog(keras.callbacks.Callback):
    """One log line per fine-tuning epoch: its number, loss, validation AUC and the time it took."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs, self.started = epochs, 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items() if k in ("loss", "val_loss", "val_auc"))
        log.info("fine-tuning epoch %d/%d: %s in %s", epoch + 1, self.epochs, shown,
                 duration(time.monotonic() - self.started))


def fine_tune(base, head, sets: SplitFeatures, config: ModelConfig, backup: Path | None = None,
              verbose: int = 0) -> tuple[SplitFeatures, dict]:
    """Train config.fine_tune_blocks of the base and the head together on the training images (config's
    fine_tune_* settings), in the precision the features were computed in (a bfloat16 copy trains and its float32
    weights are copied back). With `backup`, each finished epoch is saved there and a rerun resumes after the
    last one (keras.callbacks.BackupAndRestore; the folder is removed once all epochs are done).

    The base's weights change, so cached features no longer describe it: every part is featurized again
    (uncached, clean views only, same precision). Returns (the new features, history with fine_tune_ prefixes).
    """
    precision = sets.validation.precision
    model = assemble(base, head)
    unfreeze(base, config.fine_tune_blocks)
    trained = in_precision(model, precision)
    compile_model(trained, config.fine_tune_optimizer, config.fine_tune_learning_rate)
    size = preprocessing_of(config)
    train, validation = sets.train.examples, sets.validation.examples
    callbacks = [EpochLog(config.fine_tune_epochs)]
    if backup:
        callbacks.insert(0, keras.callbacks.BackupAndRestore(str(backup)))
    log.info("fine-tuning %s for %d epochs in %s (%s, lr %g, batch %d, %s augmentation)",
             "+".join(config.fine_tune_blocks), config.fine_tune_epochs, precision, config.fine_tune_optimizer,
             config.fine_tune_learning_rate, config.fine_tune_batch_size, config.fine_tune_augment)
    history = trained.fit(
        make_dataset(train, size, config.fine_tune_batch_size, augment_images=config.fine_tune_augment != "none",
                     shuffle=True, seed=config.seed),
        validation_data=make_dataset(validation, size, config.fine_tune_batch_size) if validation else None,
        epochs=config.fine_tune_epochs,
        verbose=verbose,
        callbacks=callbacks,
    )
    if trained is not model:
        model.set_weights(trained.get_weights())
    base.trainable = False
    refeaturized = SplitFeatures(**{name: featurize_tuned(base, config, part.examples, precision)
                                    for name, part in sets.parts().items()})
    return refeaturized, {f"fine_tune_{k}": v for k, v in history.history.items()}


def featurize_tuned(base, config: ModelConfig, examples, precision: str) -> Features:
    """Features of examples (clean views, uncached) through a fine-tuned base, in `precision`."""
    return featurize(in_precision(base, precision), "", examples, 0, None, preprocessing=preprocessing_of(config))
