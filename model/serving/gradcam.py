"""Grad-CAM for the classifier: probability, heatmap and gate features from one forward pass (the overlay that shows
the heatmap is model/serving/overlay.py, numpy only)."""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from model.architecture import BASE_NAME, gate_outputs


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
