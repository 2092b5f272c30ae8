"""Activation-range equalization: the same float model, with ReLU outputs int8 resolves finer.

Full-integer int8 gives each activation tensor one scale, set by its largest channel; a
channel whose values stay far below that one uses only a few of the 256 levels. Scaling
channel i of a ReLU's output by c_i > 0 (its producer's batch-norm gamma and beta, or
kernel and bias) and dividing the next layer's weights for input i by c_i leaves the float
function unchanged: ReLU, max-pooling, dropout and flattening all commute with a positive
per-channel scale. The producer's int8 weights do not change either (one scale per output
channel absorbs c_i); the consumer's weights for a raised channel get coarser, so

    c_i = (largest channel maximum / channel i's maximum) ** alpha

balances the two: alpha 0 changes nothing, 1 raises every channel to the largest one's
range. The idea is SmoothQuant's (Xiao et al., 2022), applied to a CNN's ReLU outputs.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import keras
import numpy as np

from fmnist.preprocessing import preprocess

# Layers between a ReLU and the layer that consumes it that commute with a positive
# per-channel scale (Flatten keeps channels last, so channel i is every C-th input).
_PASS_THROUGH = (keras.layers.MaxPooling2D, keras.layers.Dropout, keras.layers.Flatten)


def equalize_activations(
    model: keras.Model,
    images: np.ndarray,
    alpha: float,
    scale: Callable[[np.ndarray], np.ndarray] = preprocess,
) -> keras.Model:
    """A copy of `model` whose ReLU outputs are rescaled per channel as above, with channel
    maxima measured on uint8 `images` (`scale`d into the model's input, the contract's rule);
    `model` itself if alpha is 0 or it is not a plain chain of layers (a residual Add mixes
    channels of two paths: left as it is)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    pairs = _relu_pairs(model) if alpha else []
    if not pairs:
        return model
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    probe = keras.Model(copy.inputs, [copy.get_layer(relu).output for relu, _, _ in pairs])
    outputs = probe.predict(scale(images), batch_size=256, verbose=0)
    if len(pairs) == 1:
        outputs = [outputs]
    # Rescaling one ReLU's output leaves every other ReLU's output as it was (the consumer
    # undoes it), so maxima measured once on the original hold for all the pairs.
    for (_, producer, consumer), values in zip(pairs, outputs, strict=True):
        maxima = values.reshape(-1, values.shape[-1]).max(axis=0).astype(np.float64)
        factors = np.ones_like(maxima)
        live = maxima > 1e-6 * maxima.max()  # a channel that never fires keeps factor 1
        factors[live] = (maxima.max() / maxima[live]) ** alpha
        _scale_outputs(copy.get_layer(producer), factors)
        _scale_inputs(copy.get_layer(consumer), factors)
    return copy


def _relu_pairs(model: keras.Model) -> list[tuple[str, str, str]]:
    """(ReLU, its producer, its consumer) names for every unbounded ReLU between a batch
    norm or linear layer and a Conv2D/Dense it alone feeds; [] unless `model` is a chain."""
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    try:
        for previous, layer in itertools.pairwise(layers):
            if layer.input is not previous.output:  # a branch or a join: not a chain
                return []
    except (AttributeError, ValueError):  # a layer called more than once: not a chain
        return []
    pairs = []
    for index, layer in enumerate(layers):
        if not isinstance(layer, keras.layers.ReLU) or layer.max_value is not None or index == 0:
            continue
        if layer.negative_slope or layer.threshold:
            continue
        producer = layers[index - 1]
        if not _is_scalable_producer(producer):
            continue
        following = layers[index + 1 :]
        while following and isinstance(following[0], _PASS_THROUGH):
            following = following[1:]
        if following and isinstance(following[0], keras.layers.Conv2D | keras.layers.Dense):
            pairs.append((layer.name, producer.name, following[0].name))
    return pairs


def is_channel_batch_norm(layer: keras.layers.Layer) -> bool:
    """A batch norm over the last (channel) axis with both gamma and beta."""
    return (
        isinstance(layer, keras.layers.BatchNormalization)
        and layer.scale
        and layer.center
        and layer.axis in (-1, len(layer.input.shape) - 1)
    )


def _is_scalable_producer(layer: keras.layers.Layer) -> bool:
    if isinstance(layer, keras.layers.BatchNormalization):
        return is_channel_batch_norm(layer)
    if isinstance(layer, keras.layers.Conv2D | keras.layers.Dense):
        return layer.activation in (None, keras.activations.linear)
    return False


def _scale_outputs(layer: keras.layers.Layer, factors: np.ndarray) -> None:
    """Multiply output channel i of `layer` by factors[i]."""
    weights = layer.get_weights()
    if isinstance(layer, keras.layers.BatchNormalization):
        gamma, beta, *stats = weights
        weights = [gamma * factors, beta * factors, *stats]
    else:  # kernel [..., out] and an optional bias [out]
        weights = [w * factors for w in weights]
    layer.set_weights([w.astype(np.float32) for w in weights])


def _scale_inputs(layer: keras.layers.Layer, factors: np.ndarray) -> None:
    """Divide the weights `layer` applies to input channel i by factors[i]."""
    kernel, *rest = layer.get_weights()
    if isinstance(layer, keras.layers.Conv2D):  # [h, w, in, out]
        kernel = kernel / factors[None, None, :, None]
    else:  # Dense [in, out]; after a Flatten, `in` runs over positions x channels
        units = kernel.shape[-1]
        kernel = (kernel.reshape(-1, len(factors), units) / factors[None, :, None]).reshape(
            kernel.shape
        )
    layer.set_weights([kernel.astype(np.float32), *rest])
