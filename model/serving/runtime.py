"""What executes the network: a function from a batch of network inputs to (probabilities, Grad-CAM maps, gate
features).

A faster runtime (another precision, another engine) is one more constructor here returning a `Runtime`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

Runtime = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def keras_runtime(model, precision: str = "float32") -> Runtime:
    """The Keras model in `precision` (float32 or bfloat16); probability, Grad-CAM and gate features from one
    forward pass."""
    from model.precision import in_precision
    from model.serving.gradcam import explainer

    return explainer(in_precision(model, precision))
