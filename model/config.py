"""The classifier's hyperparameters as plain data, with the seed's reference design as the default.

ModelConfig is the one list of knobs: each field's metadata says which part of the model it sets (`group`),
what it means (`help`, the command lines' help), its command-line flag where that is not --the-field-name
(`flag`), and for a preprocessing step its name in the feature cache key (`key`) and its words on the model
card (`card`). model/preprocessing.py, model/cli.py and space/presentation.py read them from here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from handoff import DIAGNOSIS_FOLDERS

POSITIVE_NAME = "COVID-19 positive"
NEGATIVE_NAME = "COVID-19 negative"
CLASS_NAMES = (NEGATIVE_NAME, POSITIVE_NAME)
DEFAULT_POSITIVE_FOLDERS = (DIAGNOSIS_FOLDERS["positive"], "COVID")

OPTIMIZERS = ("sgd", "sgd_momentum", "adam", "rmsprop")
POOLINGS = ("flatten", "avg", "max", "avgmax")
BLOCKS = ("block3", "block4", "block5")
BASE_BLOCKS = ("block1", "block2", *BLOCKS)
AUGMENTATIONS = ("none", "light")
EQUALIZATIONS = ("none", "global", "clahe")
HEADS = ("dense", "logistic")
VALIDATION, UNSEEN_SOURCES = "validation", "unseen_sources"
OPERATING_POINTS = (VALIDATION, UNSEEN_SOURCES)

BASE, PREPROCESSING, FEATURES, HEAD, FINE_TUNE, SPLIT = "base", "preprocessing", "features", "head", "fine_tune", "split"
"""The groups of knobs: the base network, the preprocessing steps (off at their defaults), the features the
head reads, the head and its training, fine-tuning (off at its default), and the seed (whose flag belongs to the
data split's flags)."""


def knob(default: Any, group: str, help: str, **metadata: Any) -> Any:
    """A ModelConfig field with its metadata (see the module docstring)."""
    return field(default=default, metadata={"group": group, "help": help, **metadata})


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build, compile and train one classifier; each field's `help` says what it does."""

    input_size: int = knob(256, BASE, "input size in pixels", flag="--size")
    weights: str = knob("imagenet", BASE, "base weights: imagenet, none, or a VGG-16 no-top weights file")
    film: bool = knob(False, PREPROCESSING, "first find the film in the frame: remove uniform borders of any grey, "
                      "screen surroundings and text strips (model/film.py)", key="film", card="film found in the frame",
                      omit_off=True)
    lungs: str = knob("", PREPROCESSING, "then crop to both lung fields with a margin, found by this lung localiser "
                      "(a lungs.keras FILE, recorded by its version; inverted films are read inverted back; "
                      "model/lungs.py)", key="lungs", card="cropped to both lungs (localiser {})", metavar="FILE",
                      omit_off=True)
    crop: float = knob(0.0, PREPROCESSING, "fraction of each border to remove (where markers and rulers sit)",
                       key="crop", card="border crop {:g}")
    harmonize: int = knob(0, PREPROCESSING, "bring the region read to PX x PX before equalizing (0: off), so all "
                          "sources are equally coarse", key="harm", card="brought to {} px", metavar="PX")
    equalize: str = knob("none", PREPROCESSING, "histogram equalization", key="eq", card="{} histogram equalization",
                         choices=EQUALIZATIONS)
    framed_views: bool = knob(False, PREPROCESSING, "frame the augmented training views the ways users frame films "
                              "(borders, screens, crops, small rotations; model/framing.py)", key="fv",
                              card="training views framed as users frame films", omit_off=True)
    feature_layers: tuple[str, ...] = knob(("block5",), FEATURES, "VGG-16 blocks the head reads (pooled; flatten "
                                           "reads block5 only)", choices=BLOCKS, nargs="+")
    pooling: str = knob("flatten", HEAD, "flatten reads block 5's map (the reference design); avg, max or avgmax "
                        "pool each block of --feature-layers and concatenate", choices=POOLINGS)
    head: str = knob("dense", HEAD, "dense layers, or logistic (none)", choices=HEADS)
    dense: tuple[int, ...] = knob((1024, 512), HEAD, "dense layer sizes", nargs="*")
    dropout: float = knob(0.0, HEAD, "dropout after each dense layer")
    l2: float = knob(0.0, HEAD, "L2 penalty on the head's weights")
    optimizer: str = knob("sgd", HEAD, "optimizer", choices=OPTIMIZERS)
    learning_rate: float = knob(0.01, HEAD, "learning rate", flag="--lr")
    epochs: int = knob(20, HEAD, "training epochs")
    batch_size: int = knob(32, HEAD, "training batch size")
    class_weight: bool = knob(False, HEAD, "weight classes by inverse frequency")
    fine_tune_epochs: int = knob(0, FINE_TUNE, "after the head, train the unfrozen base blocks and the head together "
                                 "for N epochs from the images (0: off; minutes per epoch without a GPU; resumable "
                                 "by epoch: rerun the same command after an interruption)", metavar="N")
    fine_tune_blocks: tuple[str, ...] = knob(("block4", "block5"), FINE_TUNE, "VGG-16 blocks fine-tuning unfreezes",
                                             choices=BASE_BLOCKS, nargs="+")
    fine_tune_optimizer: str = knob("adam", FINE_TUNE, "fine-tuning optimizer", choices=OPTIMIZERS)
    fine_tune_learning_rate: float = knob(1e-4, FINE_TUNE, "fine-tuning learning rate", flag="--fine-tune-lr")
    fine_tune_batch_size: int = knob(16, FINE_TUNE, "fine-tuning batch size")
    fine_tune_augment: str = knob("light", FINE_TUNE, "augmentation of the fine-tuning images (model/augment.py)",
                                  choices=AUGMENTATIONS)
    target_sensitivity: float | None = knob(None, BASE, "choose the threshold for this sensitivity (unset: Youden's "
                                            "J on validation)")
    operating_point: str = knob(VALIDATION, BASE, "where --target-sensitivity must hold: on the validation patients, "
                                "or on COVID-19 films from hospitals never trained on (unseen_sources: cross-validation "
                                "grouped by source, at a specificity among --reference-normals; model/training/"
                                "transfer.py)", choices=OPERATING_POINTS)
    seed: int = knob(0, SPLIT, "seed for the split, augmentation and initialisation")

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
        object.__setattr__(self, "fine_tune_blocks", tuple(b for b in BASE_BLOCKS if b in self.fine_tune_blocks))
        self._check_preprocessing_and_features()
        self._check_fine_tuning()

    def _check_fine_tuning(self) -> None:
        if self.fine_tune_epochs < 0:
            raise ValueError(f"fine_tune_epochs must be at least 0, got {self.fine_tune_epochs}")
        if not self.fine_tune_blocks:
            raise ValueError(f"fine_tune_blocks must name at least one of {BASE_BLOCKS}")
        if self.fine_tune_optimizer not in OPTIMIZERS:
            raise ValueError(f"fine_tune_optimizer must be one of {OPTIMIZERS}, got {self.fine_tune_optimizer!r}")
        if self.fine_tune_learning_rate <= 0 or self.fine_tune_batch_size < 1:
            raise ValueError("fine_tune_learning_rate must be positive and fine_tune_batch_size at least 1")
        if self.fine_tune_augment not in AUGMENTATIONS:
            raise ValueError(f"fine_tune_augment must be one of {AUGMENTATIONS}, got {self.fine_tune_augment!r}")

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
        if self.operating_point not in OPERATING_POINTS:
            raise ValueError(f"operating_point must be one of {OPERATING_POINTS}, got {self.operating_point!r}")
        if self.operating_point == UNSEEN_SOURCES and self.target_sensitivity is None:
            raise ValueError("operating_point unseen_sources needs a target_sensitivity")

    @property
    def hidden(self) -> tuple[int, ...]:
        """The dense hidden layers this head really has (none for a logistic head)."""
        return () if self.head == "logistic" else self.dense

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["dense"], d["feature_layers"] = list(self.dense), list(self.feature_layers)
        d["fine_tune_blocks"] = list(self.fine_tune_blocks)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        tuples = ("dense", "feature_layers", "fine_tune_blocks")
        return cls(**{k: (tuple(v) if k in tuples else v) for k, v in d.items() if k in names})


def fields_of(group: str, config_type: type = ModelConfig) -> tuple[dataclasses.Field, ...]:
    """The fields of one group of knobs, in declaration order."""
    return tuple(f for f in dataclasses.fields(config_type) if f.metadata.get("group") == group)


REFERENCE = ModelConfig()
