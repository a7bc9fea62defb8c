"""The classifier's hyperparameters as plain data, with the seed's reference design as the default."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

POSITIVE_NAME = "COVID-19 positive"
NEGATIVE_NAME = "COVID-19 negative"
CLASS_NAMES = (NEGATIVE_NAME, POSITIVE_NAME)
DEFAULT_POSITIVE_FOLDERS = ("covid", "COVID")

OPTIMIZERS = ("sgd", "sgd_momentum", "adam", "rmsprop")
POOLINGS = ("flatten", "avg", "max", "avgmax")
BLOCKS = ("block3", "block4", "block5")
EQUALIZATIONS = ("none", "global", "clahe")
HEADS = ("dense", "logistic")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build, compile and train one classifier.

    `weights` is "imagenet", "none", or a path to a VGG-16 no-top weights file. Preprocessing: `crop`
    removes that fraction of each border (where markers and rulers sit), `harmonize` first brings every
    image to that many pixels square (0: off), `equalize` is none, global histogram equalization or CLAHE.
    Features: `pooling` flatten reads block 5's map (the reference design); avg, max or avgmax pool each
    block in `feature_layers` and concatenate. `head` dense has the `dense` hidden layers; logistic has
    none and an L2 penalty `l2`. `target_sensitivity` picks the threshold on validation (None: Youden's J).
    """

    input_size: int = 256
    weights: str = "imagenet"
    trainable_base: bool = False
    crop: float = 0.0
    harmonize: int = 0
    equalize: str = "none"
    feature_layers: tuple[str, ...] = ("block5",)
    pooling: str = "flatten"
    head: str = "dense"
    dense: tuple[int, ...] = (1024, 512)
    dropout: float = 0.0
    l2: float = 0.0
    optimizer: str = "sgd"
    learning_rate: float = 0.01
    epochs: int = 20
    batch_size: int = 32
    class_weight: bool = False
    target_sensitivity: float | None = None
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
        object.__setattr__(self, "feature_layers", tuple(b for b in BLOCKS if b in self.feature_layers))
        self._check_preprocessing_and_features()

    def _check_preprocessing_and_features(self) -> None:
        if not 0.0 <= self.crop < 0.25:
            raise ValueError(f"crop must be in [0, 0.25), got {self.crop}")
        if self.harmonize and self.harmonize < 32:
            raise ValueError(f"harmonize must be 0 (off) or at least 32 px, got {self.harmonize}")
        if self.equalize not in EQUALIZATIONS:
            raise ValueError(f"equalize must be one of {EQUALIZATIONS}, got {self.equalize!r}")
        if not self.feature_layers:
            raise ValueError(f"feature_layers must name at least one of {BLOCKS}")
        if self.pooling == "flatten" and self.feature_layers != ("block5",):
            raise ValueError("flatten pooling reads block5 only; pool (avg, max, avgmax) to read other blocks")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.l2 < 0:
            raise ValueError(f"l2 must be at least 0, got {self.l2}")
        if self.target_sensitivity is not None and not 0 < self.target_sensitivity <= 1:
            raise ValueError(f"target_sensitivity must be in (0, 1], got {self.target_sensitivity}")

    @property
    def hidden(self) -> tuple[int, ...]:
        """The dense hidden layers this head really has (none for a logistic head)."""
        return () if self.head == "logistic" else self.dense

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["dense"], d["feature_layers"] = list(self.dense), list(self.feature_layers)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        tuples = ("dense", "feature_layers")
        return cls(**{k: (tuple(v) if k in tuples else v) for k, v in d.items() if k in names})


REFERENCE = ModelConfig()
