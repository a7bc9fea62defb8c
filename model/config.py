"""The classifier's hyperparameters as plain data, with the seed's reference design as the default."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

POSITIVE_NAME = "COVID-19 positive"
NEGATIVE_NAME = "COVID-19 negative"
CLASS_NAMES = (NEGATIVE_NAME, POSITIVE_NAME)
DEFAULT_POSITIVE_FOLDERS = ("covid", "COVID")

OPTIMIZERS = ("sgd", "sgd_momentum", "adam", "rmsprop")
POOLINGS = ("flatten", "avg")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build, compile and train one classifier.

    `weights` is "imagenet", "none", or a path to a VGG-16 no-top weights file.
    """

    input_size: int = 256
    weights: str = "imagenet"
    trainable_base: bool = False
    pooling: str = "flatten"
    dense: tuple[int, ...] = (1024, 512)
    dropout: float = 0.0
    optimizer: str = "sgd"
    learning_rate: float = 0.01
    epochs: int = 20
    batch_size: int = 32
    class_weight: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.input_size < 32:
            raise ValueError(f"input_size must be at least 32 (VGG-16 pools 5 times), got {self.input_size}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        object.__setattr__(self, "dense", tuple(int(d) for d in self.dense))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["dense"] = list(self.dense)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: (tuple(v) if k == "dense" else v) for k, v in d.items() if k in names})


REFERENCE = ModelConfig()
