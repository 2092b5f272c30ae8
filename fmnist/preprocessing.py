"""The one input rule of the float model: uint8 pixels / 255 as float32 [N, 28, 28, 1].

Training, evaluation, export (inside the SavedModel's graph too) and the edge runner all
scale pixels by this rule. TF-free at import: TensorFlow loads only for tensor inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

PIXEL_SCALE = 255.0  # raw pixel value that maps to 1.0


def scale_pixels(images: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [0, 1], any shape: the same bits as TensorFlow's eager
    division. (Its graphs multiply by 1/255 instead, a last-bit difference for half the
    pixel values, so tensors are left to TensorFlow.)"""
    return images.astype(np.float32) / np.float32(PIXEL_SCALE)


def preprocess(images: Any) -> Any:
    """uint8 pixels [N, 28, 28] (or [N, 28, 28, 1]) -> float32 [N, 28, 28, 1] in [0, 1].

    A numpy array comes back as one; anything else is a TensorFlow tensor (inside a graph
    too) and stays one."""
    if isinstance(images, np.ndarray):
        scaled = scale_pixels(images)
        return scaled[..., np.newaxis] if scaled.ndim == 3 else scaled
    import tensorflow as tf

    scaled = tf.cast(images, tf.float32) / PIXEL_SCALE
    return tf.expand_dims(scaled, -1) if scaled.shape.rank == 3 else scaled


def predict_probabilities(model: Any, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """A Keras model's class probabilities for uint8 images [N, 28, 28]."""
    return np.asarray(model.predict(preprocess(images), batch_size=batch_size, verbose=0))
