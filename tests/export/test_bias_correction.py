"""Bias correction: int8 weight rounding no longer shifts a channel's mean output."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from fmnist.contract import FASHION_MNIST
from fmnist.edge.runtime import select_runtime
from fmnist.export import tflite
from fmnist.export.bias_correction import correct_rounding_bias, rounding_error
from fmnist.export.config import Int8Options
from fmnist.preprocessing import preprocess
from fmnist.train.config import TrainConfig
from fmnist.train.model import build_model

SMALL = {"width": 8, "depth": 2, "dense_units": 16}


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (64, 28, 28), dtype=np.uint8)


@pytest.mark.parametrize("per_channel", [True, False])
def test_rounded_weights_lie_on_the_int8_grid_tflite_uses(per_channel: bool) -> None:
    kernel = np.random.default_rng(1).normal(size=(3, 3, 4, 6)) * np.arange(1, 7)
    rounded = (kernel + rounding_error(kernel, per_channel)).reshape(-1, 6)
    flat = kernel.reshape(-1, 6)
    scale = np.abs(flat).max(axis=0 if per_channel else None, keepdims=True) / 127
    steps = rounded / scale
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-9)  # whole int8 steps
    assert np.abs(steps).max() <= 127 + 1e-9
    assert np.abs(rounded - flat).max() <= scale.max() / 2 + 1e-12  # nearest step


def test_an_all_zero_channel_rounds_exactly() -> None:
    kernel = np.zeros((3, 3, 1, 2))
    kernel[..., 0, 1] = 0.3
    assert not rounding_error(kernel).any()


def _folded_mean(model: keras.Model, images: np.ndarray, layer: str) -> np.ndarray:
    probe = keras.Model(model.inputs, model.get_layer(layer).output)
    out = probe.predict(preprocess(images), verbose=0)
    return out.reshape(-1, out.shape[-1]).mean(axis=0)


def _round_first_conv(model: keras.Model) -> keras.Model:
    """`model` with block1's weights, batch norm folded in, rounded as TFLite rounds them."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    conv, norm = copy.get_layer("block1_conv1"), copy.get_layer("block1_bn1")
    kernel, *rest = conv.get_weights()
    gamma, _, _, variance = norm.get_weights()
    scale = gamma / np.sqrt(variance + norm.epsilon)
    folded = kernel.astype(np.float64) * scale
    conv.set_weights([((folded + rounding_error(folded)) / scale).astype(np.float32), *rest])
    return copy


def test_rounding_the_corrected_layer_keeps_its_channel_means(images: np.ndarray) -> None:
    model = build_model(TrainConfig(**SMALL))
    exact = _folded_mean(model, images, "block1_bn1")
    uncorrected = _folded_mean(_round_first_conv(model), images, "block1_bn1")
    corrected = correct_rounding_bias(model, images)
    assert corrected is not model
    kept = _folded_mean(_round_first_conv(corrected), images, "block1_bn1")
    shift, left = np.abs(uncorrected - exact), np.abs(kept - exact)
    assert shift.max() > 1e-4  # rounding did shift a channel: the test can fail
    assert left.max() < 0.01 * shift.max()


def test_the_corrected_float_model_changes_only_by_the_shift(images: np.ndarray) -> None:
    model = build_model(TrainConfig(**SMALL))
    corrected = correct_rounding_bias(model, images)
    x = preprocess(images)
    np.testing.assert_allclose(
        corrected.predict(x, verbose=0), model.predict(x, verbose=0), atol=0.02
    )


def test_the_int8_model_keeps_the_float_channel_means(images: np.ndarray) -> None:
    """Through the real converter and interpreter: a convolution whose weights round badly
    (one large weight per channel sets a coarse scale) shifts its int8 outputs' means;
    with bias correction they stay near the float ones."""
    rng = np.random.default_rng(2)
    inputs = keras.Input((28, 28, 1))
    conv = keras.layers.Conv2D(4, 3, padding="same")
    model = keras.Model(inputs, keras.layers.Flatten()(conv(inputs)))
    kernel = rng.uniform(-1, 1, (3, 3, 1, 4))
    kernel[0, 0, 0] = 12.0  # the scale: 12/127 per step, so the rest round coarsely
    conv.set_weights([kernel.astype(np.float32), np.zeros(4, np.float32)])
    expected = model.predict(preprocess(images), verbose=0).reshape(-1, 4).mean(axis=0)

    def int8_means(bias_correction: bool) -> np.ndarray:
        options = Int8Options(equalize_alpha=0.0, bias_correction=bias_correction)
        content = tflite.convert_int8(model, images[..., None], FASHION_MNIST, options)
        interpreter = select_runtime().interpreter_class(model_content=content)
        (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
        interpreter.resize_tensor_input(inp["index"], [len(images), 28, 28, 1])
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], images[..., None])
        interpreter.invoke()
        scale, zero_point = out["quantization"]
        outputs = (interpreter.get_tensor(out["index"]).astype(np.float64) - zero_point) * scale
        return outputs.reshape(-1, 4).mean(axis=0)

    shift = np.abs(int8_means(False) - expected)
    left = np.abs(int8_means(True) - expected)
    assert shift.max() > 0.02  # measured 0.053 without correction, 1.5e-4 with
    assert left.max() < 0.1 * shift.max()
