"""Keras models of shapes the training config does not build, for export's edge cases."""

from __future__ import annotations

import pytest


def _small_cnn(*, residual: bool = False, relu_max: float | None = None, width: int = 8):
    """conv-BN-ReLU, conv-BN, (+ the first ReLU's output), ReLU, pool, a softmax layer."""
    import keras

    keras.utils.set_random_seed(0)
    layers = keras.layers
    inputs = keras.Input((28, 28, 1), name="image")
    first = layers.ReLU(relu_max)(layers.BatchNormalization()(layers.Conv2D(width, 3)(inputs)))
    x = layers.BatchNormalization()(layers.Conv2D(width, 3, padding="same")(first))
    if residual:
        x = layers.Add()([x, first])
    x = layers.MaxPooling2D()(layers.ReLU(relu_max)(x))
    x = layers.Dense(16)(layers.Flatten()(x))
    outputs = layers.Dense(10, activation="softmax")(layers.ReLU(relu_max)(x))
    return keras.Model(inputs, outputs)


@pytest.fixture
def residual_model():
    """A CNN whose second convolution's output is added to the first one's (an int8 ADD)."""
    return _small_cnn(residual=True)


@pytest.fixture
def bounded_relu_model():
    """A CNN whose ReLUs stop at 6 (ReLU6)."""
    return _small_cnn(relu_max=6.0)
