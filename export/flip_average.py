"""Test-time flip averaging: an opt-in variant of the whole bundle (`fmnist export --flip-average`).

Fashion-MNIST's classes look the same mirrored (training flips images too), so the mean of
the probabilities for an image and for its mirror image is a better answer than either; it
costs twice the work per image, which keeps it off by default (docs/accuracy.md). When it is
on, every model of the bundle (SavedModel, both TFLite models) and the float reference
outputs average the two, so parity still compares like with like.
"""

from __future__ import annotations

import keras


def flip_averaged(model: keras.Model) -> keras.Model:
    """`model` run on images [N, H, W, C] and on their mirror images, probabilities averaged:
    the same input and output as `model`, and the same answer for an image and its mirror."""
    image = keras.Input(model.input_shape[1:], name="image")
    mirror = keras.ops.flip(image, axis=2)  # axis 2 is the width
    average = keras.layers.Average(name="flip_average")([model(image), model(mirror)])
    return keras.Model(image, average, name=f"{model.name}_flip_average")
