"""Grad-CAM for the classifier: probability and heatmap from one forward pass, and an overlay to show it."""

from __future__ import annotations

import functools
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from model.architecture import BASE_NAME, gate_outputs
from model.preprocessing import Box, scale_box


def explainer(model: keras.Model) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """A compiled function mapping a batch of network inputs to (probabilities (n,), heatmaps (n, h, w) in [0, 1],
    gate features (n, d): what the input gate reads, see model.architecture.gate_outputs).

    The heatmap is Grad-CAM on the deepest convolution the head reads, for the positive class's logit, so a
    saturated sigmoid still gives a map; map and probability come from one forward pass. In a bfloat16
    network the logit and the map are computed in float32.
    """
    base = model.get_layer(BASE_NAME)
    both = keras.Model(base.input, list(gate_outputs(base)))
    head = model.layers[model.layers.index(base) + 1 :]
    preds = head[-1]

    size = int(model.input_shape[1])

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
    def run(images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            conv, x, gate = both(images, training=False)
            for layer in head[:-1]:
                x = layer(x, training=False)
            logit = tf.matmul(tf.cast(x, preds.kernel.dtype), preds.kernel) + preds.bias
        grads = tf.cast(tape.gradient(logit, conv), tf.float32)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * tf.cast(conv, tf.float32), axis=-1))
        cam = cam / (tf.reduce_max(cam, axis=(1, 2), keepdims=True) + 1e-8)
        return tf.sigmoid(logit)[:, 0], cam, tf.cast(gate, tf.float32)

    def explain(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        probs, cams, gate = run(tf.convert_to_tensor(images, dtype=tf.float32))
        return probs.numpy(), cams.numpy(), gate.numpy()

    return explain


@functools.cache
def _jet(alpha: float) -> np.ndarray:
    """alpha times matplotlib's jet colormap as a 256 x 3 float32 table (a lookup is 4x faster than the colormap)."""
    from matplotlib import colormaps

    return (alpha * 255.0 * colormaps["jet"](np.linspace(0, 1, 256))[:, :3]).astype("float32")


def overlay(grey: np.ndarray, heatmap: np.ndarray, box: Box | None = None, box_shape: tuple[int, ...] | None = None,
            alpha: float = 0.4) -> np.ndarray:
    """Blend a [0, 1] heatmap (any resolution) over a uint8 grey image as an RGB uint8 picture.

    The heatmap covers `box` (model.preprocessing.crop_box: the region the network saw; None: all of it), given
    in the pixels of an image of `box_shape` (default: grey's own, e.g. the full upload when grey is its preview);
    outside it the picture stays plain grey.
    """
    from PIL import Image

    h, w = grey.shape
    top, left, bottom, right = scale_box(box or (0, 0, *(box_shape or grey.shape)[:2]), box_shape or grey.shape, (h, w))
    small = Image.fromarray(np.round(np.clip(heatmap, 0, 1) * 255).astype("uint8"), mode="L")
    heat = np.asarray(small.resize((right - left, bottom - top), Image.Resampling.BILINEAR))
    blended = np.repeat(grey[:, :, None].astype("float32"), 3, axis=2)
    blended[top:bottom, left:right] = (1 - alpha) * blended[top:bottom, left:right] + _jet(alpha)[heat]
    return np.clip(blended, 0, 255).astype("uint8")
