"""Bias correction: int8 weight rounding that leaves every channel's mean output where it was.

TFLite rounds each output channel's weights (batch norm folded in) to int8 with one scale,
max |w| / 127. The rounding error d moves that channel's output by d . x, and over the
images its mean part, d . E[x], is a systematic shift, not noise: pixels and ReLU outputs
are never negative, so E[x] is far from 0; it hurts most in the first convolution (nine
weights per channel, on raw pixels). Subtracting d . E[x] (E[x] over the calibration
images) from the bias the converter folds, a batch norm's beta or the layer's own bias,
removes the shift and leaves the float model almost unchanged (docs/accuracy.md has what it
gained). The idea is Nagel et al.'s bias correction ("Data-Free Quantization", 2019), here
with the input means measured instead of derived from batch-norm statistics.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from fmnist.export.equalize import is_channel_batch_norm
from fmnist.preprocessing import preprocess

_INT8_MAX = 127  # TFLite's symmetric int8 weights: scale = max |w| / 127 per output channel
_BATCH = 64  # images per pass when averaging input patches (bounds the memory)


def correct_rounding_bias(
    model: keras.Model,
    images: np.ndarray,
    per_channel: bool = True,
    scale: Callable[[np.ndarray], np.ndarray] = preprocess,
) -> keras.Model:
    """A copy of `model` whose Conv2D and Dense layers' biases (or the batch norms after
    them) absorb the mean shift int8 weight rounding (one scale per output channel, or per
    tensor) causes on uint8 `images` (`scale`d into the model's input); `model` itself if no
    layer has a bias to correct."""
    targets = _correctable(model)
    if not targets:
        return model
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    layers = [(copy.get_layer(name), bn and copy.get_layer(bn)) for name, bn in targets]
    means = _input_means([layer for layer, _ in layers], copy, images, scale)
    for (layer, norm), mean in zip(layers, means, strict=True):
        kernel, *bias = layer.get_weights()
        scale = np.ones(kernel.shape[-1])
        if norm is not None:
            gamma, beta, moving_mean, variance = norm.get_weights()
            scale = gamma.astype(np.float64) / np.sqrt(variance.astype(np.float64) + norm.epsilon)
        error = rounding_error(kernel.astype(np.float64) * scale, per_channel)
        shift = mean @ error.reshape(-1, kernel.shape[-1])
        if norm is not None:
            norm.set_weights([gamma, (beta - shift).astype(np.float32), moving_mean, variance])
        else:
            layer.set_weights([kernel, (bias[0] - shift).astype(np.float32)])
    return copy


def rounding_error(kernel: np.ndarray, per_channel: bool = True) -> np.ndarray:
    """int8-rounded minus exact weights: symmetric, one scale per output channel (the last
    axis) or one for the whole kernel, max |w| / 127, as TFLite rounds them."""
    flat = kernel.reshape(-1, kernel.shape[-1])
    scale = np.abs(flat).max(axis=0 if per_channel else None, keepdims=True) / _INT8_MAX
    scale[scale == 0] = 1.0  # an all-zero channel rounds exactly
    return (np.round(flat / scale) * scale - flat).reshape(kernel.shape)


def _correctable(model: keras.Model) -> list[tuple[str, str | None]]:
    """(layer, the batch norm whose beta takes its correction, or None: its own bias) for
    every Conv2D and Dense with somewhere to put it. The converter folds a batch norm into
    the layer before it when that layer is linear and feeds nothing else."""
    found = []
    for layer in model.layers:
        if type(layer) not in (keras.layers.Conv2D, keras.layers.Dense):
            continue  # depthwise and transposed convolutions quantize differently
        if isinstance(layer, keras.layers.Conv2D) and (
            layer.groups != 1 or layer.data_format != "channels_last"
        ):
            continue  # patches would not line up with the kernel's inputs
        if _input_of(layer) is None:
            continue  # called more than once: no single input to average
        consumers = _consumers(model, layer)
        norm = consumers[0] if len(consumers) == 1 else None
        linear = layer.activation in (None, keras.activations.linear)
        if norm is not None and linear and is_channel_batch_norm(norm):
            found.append((layer.name, norm.name))
        elif layer.use_bias:
            found.append((layer.name, None))
    return found


def _consumers(model: keras.Model, layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    return [other for other in model.layers if _input_of(other) is layer.output]


def _input_of(layer: keras.layers.Layer) -> object:
    try:
        return layer.input
    except (AttributeError, ValueError):  # an input layer, or a layer called more than once
        return None


def _input_means(
    layers: list[keras.layers.Layer],
    model: keras.Model,
    images: np.ndarray,
    scale: Callable[[np.ndarray], np.ndarray],
) -> list[np.ndarray]:
    """Each layer's mean input over `images`: for a convolution the mean patch (padding
    zeros included, as the convolution sees them), flattened like its kernel's inputs."""
    probe = keras.Model(model.inputs, [layer.input for layer in layers])
    sums = [np.zeros(np.prod(layer.get_weights()[0].shape[:-1])) for layer in layers]
    rows = [0] * len(layers)
    for start in range(0, len(images), _BATCH):
        inputs = probe(scale(images[start : start + _BATCH]), training=False)
        inputs = inputs if isinstance(inputs, list | tuple) else [inputs]
        for index, (layer, value) in enumerate(zip(layers, inputs, strict=True)):
            flat = tf.reshape(_patches(layer, value), (-1, len(sums[index])))
            sums[index] += tf.reduce_sum(tf.cast(flat, tf.float64), axis=0).numpy()
            rows[index] += int(flat.shape[0])
    return [total / count for total, count in zip(sums, rows, strict=True)]


def _patches(layer: keras.layers.Layer, value: tf.Tensor) -> tf.Tensor:
    """What each output position of `layer` multiplies with its kernel."""
    if isinstance(layer, keras.layers.Dense):
        return value
    kernel_h, kernel_w = layer.kernel_size
    return tf.image.extract_patches(
        value,
        sizes=[1, kernel_h, kernel_w, 1],
        strides=[1, *layer.strides, 1],
        rates=[1, *layer.dilation_rate, 1],
        padding=layer.padding.upper(),
    )
