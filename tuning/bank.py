"""The features every trial reads: extracted once per preprocessing (and map or pooled kind), sliced per trial."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from model.config import ModelConfig
from model.data import Example, Split
from model.features import (
    DEFAULT_CACHE,
    Features,
    SplitFeatures,
    columns_for,
    featurizer,
)
from model.preprocessing import preprocessing_of

log = logging.getLogger(__name__)


@dataclass
class FeatureBank:
    """Features of the split (and of an external folder and reference normals) for any configuration of the search
    space.

    The base runs once per image, view and preprocessing, ever (the disk cache), and once per process per
    preprocessing and kind (the memory cache); a trial slices the pooled blocks it reads.
    """

    split: Split
    views: int = 2
    cache_dir: Path | None = DEFAULT_CACHE
    external_examples: list[Example] = field(default_factory=list)
    precision: str = "float32"
    reference_examples: list[Example] = field(default_factory=list)
    _memory: dict = field(default_factory=dict)

    @property
    def has_external(self) -> bool:
        return bool(self.external_examples)

    def _variant(self, config: ModelConfig) -> str:
        return f"{preprocessing_of(config).key}-{'map' if config.pooling == 'flatten' else 'pooled'}"

    def _full(self, config: ModelConfig) -> tuple[SplitFeatures, Features | None, Features | None]:
        """All features of config's preprocessing and kind (every pooled block, or block 5's map): the split's,
        the external folder's and the reference normals' (None where there are none)."""
        variant = self._variant(config)
        if variant not in self._memory:
            log.info("features for %s", variant)
            part = featurizer(config, self.cache_dir, self.precision, sliced=False)
            sets = SplitFeatures(part(self.split.train, self.views), part(self.split.validation, 0),
                                 part(self.split.test, 0))
            external = part(self.external_examples, 0) if self.has_external else None
            reference = part(self.reference_examples, 0) if self.reference_examples else None
            self._memory[variant] = (sets, external, reference)
        return self._memory[variant]

    def sets(self, config: ModelConfig) -> SplitFeatures:
        return self._full(config)[0].columns(columns_for(config))

    def external(self, config: ModelConfig) -> Features | None:
        return _sliced(self._full(config)[1], config)

    def reference(self, config: ModelConfig) -> Features | None:
        return _sliced(self._full(config)[2], config)

    def feature_shape(self, config: ModelConfig) -> tuple[int, ...]:
        return tuple(self._full(config)[0].validation.columns(columns_for(config)).x.shape[2:])


def _sliced(features: Features | None, config: ModelConfig) -> Features | None:
    """The feature columns config's head reads (None stays None)."""
    return None if features is None else features.columns(columns_for(config))
