"""The CNN and its config: shapes, probabilities, and clear errors for bad values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fmnist.train.config import ConfigError, TrainConfig, load_config


def test_model_outputs_probabilities_for_every_image() -> None:
    from fmnist.train.model import build_model, preprocess

    for config in (TrainConfig(), TrainConfig(depth=3, batch_norm=False, dropout=0.0)):
        model = build_model(config)
        images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
        probs = np.asarray(model(preprocess(images), training=False))
        assert probs.shape == (5, 10)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
        assert model.input_shape == (None, 28, 28, 1)


def test_fused_batch_norm_trains_like_keras_batch_norm() -> None:
    """Same outputs, gradients and moving statistics over three training steps."""
    import keras
    import tensorflow as tf

    from fmnist.train.model import FusedBatchNormalization

    rng = np.random.default_rng(0)
    shape = (16, 7, 7, 8)
    layers = [
        cls(momentum=0.9) for cls in (keras.layers.BatchNormalization, FusedBatchNormalization)
    ]
    gamma, beta = rng.uniform(0.5, 2.0, shape[-1]), rng.normal(size=shape[-1])
    for layer in layers:
        layer.build(shape)
        layer.gamma.assign(gamma)
        layer.beta.assign(beta)
    for _ in range(3):
        x = tf.constant(rng.normal(3.0, 2.0, shape), tf.float32)
        weights = tf.constant(rng.normal(size=shape), tf.float32)  # a loss with real gradients
        results = []
        for layer in layers:
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=True)
                loss = tf.reduce_sum(y * weights)
            grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
            results.append([y, *grads])
        for keras_value, fused_value in zip(*results, strict=True):
            np.testing.assert_allclose(fused_value, keras_value, rtol=1e-4, atol=1e-4)
    keras_layer, fused_layer = layers
    np.testing.assert_allclose(fused_layer.moving_mean, keras_layer.moving_mean, rtol=1e-5)
    np.testing.assert_allclose(fused_layer.moving_variance, keras_layer.moving_variance, rtol=1e-5)


@pytest.mark.parametrize(
    ("keras_layer", "ours", "field"),
    [
        ("BatchNormalization", "FusedBatchNormalization", "fused_batch_norm"),
        ("Dropout", "FastDropout", "fast_dropout"),
    ],
)
def test_only_training_models_use_our_layers(keras_layer: str, ours: str, field: str) -> None:
    import keras

    from fmnist.train import model as model_module

    keras_class, our_class = getattr(keras.layers, keras_layer), getattr(model_module, ours)

    def kinds(model: keras.Model) -> set[type]:
        return {type(x) for x in model.layers if isinstance(x, keras_class)}

    build = model_module.build_model
    assert kinds(build(TrainConfig(**{field: True}), for_training=True)) == {our_class}
    assert kinds(build(TrainConfig(**{field: True}))) == {keras_class}
    assert kinds(build(TrainConfig(**{field: False}), for_training=True)) == {keras_class}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("rate", [0.05, 0.3])
def test_fast_dropout_drops_each_unit_independently_at_the_rate(dtype: str, rate: float) -> None:
    """The dropped share is the rate (within 5 standard errors), a word's two halves drop
    independently, kept units are scaled by 1/(1 - rate), and each step draws a new mask."""
    import tensorflow as tf

    from fmnist.train.model import FastDropout

    layer = FastDropout(rate, seed=1, dtype=f"mixed_{dtype}" if dtype == "bfloat16" else dtype)
    x = tf.ones([400, 50, 50], dtype)
    first, second = (np.asarray(tf.cast(layer(x, training=True), tf.float32)) for _ in range(2))
    dropped = first == 0
    margin = 5 * np.sqrt(rate * (1 - rate) / dropped.size)
    assert abs(dropped.mean() - rate) < margin
    pairs = dropped.reshape(-1, 2)  # the two halves of each random word
    assert abs(np.mean(pairs[:, 0] & pairs[:, 1]) - rate**2) < 5 * np.sqrt(rate**2 / pairs.size)
    kept = np.unique(first[~dropped])
    np.testing.assert_allclose(kept, [1 / (1 - rate)], rtol=1e-2)  # bfloat16 keeps 8 bits
    assert (second == 0).mean() == pytest.approx(rate, abs=margin)
    assert not np.array_equal(dropped, second == 0)


def test_fast_dropout_passes_gradients_through_kept_units_only() -> None:
    import tensorflow as tf

    from fmnist.train.model import FastDropout

    layer = FastDropout(0.5, seed=3)
    x = tf.constant(np.random.default_rng(0).normal(size=(64, 32)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
    gradient = np.asarray(tape.gradient(y, x))
    np.testing.assert_allclose(gradient, np.where(np.asarray(y) == 0, 0.0, 2.0))
    np.testing.assert_array_equal(layer(x, training=False), x)


def test_residual_blocks_add_a_shortcut_projected_where_the_width_changes() -> None:
    from fmnist.train.model import build_model

    plain = build_model(TrainConfig())
    model = build_model(TrainConfig(residual=True))
    names = {layer.name for layer in model.layers}
    # Block 1 has one convolution (nothing to skip); blocks 2 and 3 double the width.
    assert {"block2_add", "block3_add", "block2_shortcut_conv", "block3_shortcut_conv"} <= names
    assert "block1_add" not in names
    extra = sum(model.get_layer(f"block{b}_shortcut_conv").count_params() for b in (2, 3))
    extra += sum(model.get_layer(f"block{b}_shortcut_bn").count_params() for b in (2, 3))
    assert model.count_params() == plain.count_params() + extra


@pytest.mark.parametrize(("first_block_dropout", "blocks"), [(True, [1, 2, 3]), (False, [2, 3])])
def test_first_block_dropout_decides_whether_block_1_drops_units(
    first_block_dropout: bool, blocks: list[int]
) -> None:
    from fmnist.train.model import build_model

    model = build_model(TrainConfig(first_block_dropout=first_block_dropout))
    dropouts = [layer.name for layer in model.layers if layer.name.endswith("_dropout")]
    assert dropouts == [f"block{b}_dropout" for b in blocks] + ["dense_dropout"]


@pytest.mark.parametrize(("padding", "side"), [("same", 4), ("valid", 3)])
def test_pool_padding_decides_whether_the_7x7_map_keeps_its_last_row(
    padding: str, side: int
) -> None:
    from fmnist.train.model import build_model

    model = build_model(TrainConfig(pool_padding=padding))
    assert model.get_layer("block2_pool").output.shape[1:3] == (7, 7)
    assert model.get_layer("block3_pool").output.shape[1:3] == (side, side)


def test_relu_max_bounds_the_ranges_int8_activations_cover() -> None:
    """ReLU outputs are the int8 tensors whose range starts at 0 (zero point -128); their
    calibrated ranges stop at relu_max, and go past it without one."""
    from fmnist.edge.runtime import select_runtime
    from fmnist.export import tflite
    from fmnist.export.config import Int8Options
    from fmnist.train.model import build_model

    images = np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8)

    def largest_activation_bound(config: TrainConfig) -> float:
        content = tflite.convert_int8(build_model(config), images, Int8Options(equalize_alpha=0.0))
        interpreter = select_runtime().interpreter_class(model_content=content)
        bounds = [
            (127 - q["zero_points"][0]) * q["scales"][0]
            for q in (d["quantization_parameters"] for d in interpreter.get_tensor_details())
            if len(q["scales"]) == 1 and q["zero_points"][0] == -128
        ]
        return max(bounds)

    small = {"width": 8, "dense_units": 16}
    assert largest_activation_bound(TrainConfig(**small)) > 1.5
    assert largest_activation_bound(TrainConfig(relu_max=1.0, **small)) <= 1.0 + 1 / 255


def test_preprocess_scales_raw_pixels() -> None:
    from fmnist.train.model import preprocess

    out = np.asarray(preprocess(np.array([[[0, 255]]], dtype=np.uint8)))
    assert out.shape == (1, 1, 2, 1) and out.dtype == np.float32
    assert out.ravel().tolist() == [0.0, 1.0]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"optimizer": "adamx"}, "optimizer must be one of adam, adamw, sgd, got 'adamx'"),
        ({"learning_rate": -1}, "learning_rate must be > 0"),
        ({"dropout": 1.5}, r"dropout must be in \[0, 1\)"),
        ({"epochs": "ten"}, "epochs must be a int, got 'ten'"),
        ({"augment": 1}, "augment must be a bool"),
        ({"random_erasing": 1.5}, r"random_erasing must be in \[0, 1\]"),
        ({"ema_momentum": 1.0}, r"ema_momentum must be in \[0, 1\) \(0 switches EMA off\)"),
        ({"precision": "float16"}, "precision must be one of auto, float32, bfloat16"),
        ({"residual": "yes"}, "residual must be a bool"),
        ({"relu_max": 0.5}, r"relu_max must be 0 \(no bound\) or >= 1"),
        ({"pool_padding": "full"}, "pool_padding must be one of same, valid"),
        (
            {"shift_interpolation": "cubic"},
            "shift_interpolation must be one of nearest, bilinear",
        ),
        ({"steps_per_execution": 0}, "steps_per_execution must be >= 1"),
        (
            {"lr_schedule": "one-cycle"},
            "lr_schedule must be one of cosine, onecycle, constant, plateau",
        ),
        ({"widht": 32}, "unknown field"),
    ],
)
def test_bad_config_values_are_named(fields: dict, message: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(fields))
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_toml_config_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[train]\nwidth = 24\nlearning_rate = 1e-3\naugment = false\n")
    config = load_config(path, epochs=3)
    assert (config.width, config.learning_rate, config.augment, config.epochs) == (
        24,
        1e-3,
        False,
        3,
    )
