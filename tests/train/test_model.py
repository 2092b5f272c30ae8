"""The CNN: shapes, probabilities, and the training-only layers."""

from __future__ import annotations

import numpy as np

from fmnist.train.config import TrainConfig


def test_model_outputs_probabilities_for_every_image() -> None:
    from fmnist.preprocessing import preprocess
    from fmnist.train.model import build_model

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


def test_only_training_models_use_the_fused_batch_norm() -> None:
    import keras

    from fmnist.train.model import FusedBatchNormalization, build_model

    def kinds(model: keras.Model) -> set[type]:
        return {type(x) for x in model.layers if isinstance(x, keras.layers.BatchNormalization)}

    fused, keras_own = FusedBatchNormalization, keras.layers.BatchNormalization
    assert kinds(build_model(TrainConfig(), for_training=True)) == {fused}
    assert kinds(build_model(TrainConfig())) == {keras_own}
    assert kinds(build_model(TrainConfig(fused_batch_norm=False), for_training=True)) == {keras_own}


def test_every_block_drops_units_and_the_7x7_map_pools_to_4x4() -> None:
    from fmnist.train.model import build_model

    model = build_model(TrainConfig())
    dropouts = [layer.name for layer in model.layers if layer.name.endswith("_dropout")]
    assert dropouts == ["block1_dropout", "block2_dropout", "block3_dropout", "dense_dropout"]
    assert model.get_layer("block2_pool").output.shape[1:3] == (7, 7)
    assert model.get_layer("block3_pool").output.shape[1:3] == (4, 4)  # "same": keeps row 7
    assert model.count_params() == 806_314


def test_preprocess_of_numpy_has_tensorflow_eager_bits_and_tensors_stay_tensors() -> None:
    """Evaluation and export calibration scale numpy arrays, which TensorFlow once did
    eagerly: every pixel value must keep its bits. Graphs (tf.data, the SavedModel) keep
    TensorFlow's own ops."""
    import tensorflow as tf

    from fmnist.preprocessing import preprocess

    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    eager = (tf.cast(pixels, tf.float32) / 255.0).numpy()[..., np.newaxis]
    np.testing.assert_array_equal(preprocess(pixels).view(np.uint32), eager.view(np.uint32))

    graph = tf.function(preprocess)(tf.constant(pixels))
    assert isinstance(graph, tf.Tensor) and graph.shape == (1, 16, 16, 1)
    np.testing.assert_allclose(graph.numpy(), eager, rtol=1e-7)


def test_large_images_get_a_stem_and_28px_images_the_same_model() -> None:
    from fmnist.train.model import build_model

    fashion = build_model(TrainConfig())
    assert not [layer.name for layer in fashion.layers if layer.name.startswith("stem")]
    assert fashion.count_params() == DEFAULT_PARAMETERS
    for shape, classes, stems in (((96, 96, 3), 5, 2), ((64, 40, 1), 3, 1), ((8, 8, 1), 10, 0)):
        model = build_model(TrainConfig(), classes, input_shape=shape)
        convs = [layer for layer in model.layers if layer.name.startswith("stem_conv")]
        assert len(convs) == stems and all(layer.strides == (2, 2) for layer in convs)
        assert model.input_shape == (None, *shape) and model.output_shape == (None, classes)
        # The conv blocks see at most 32 px a side, whatever came in.
        assert max(model.get_layer("block1_conv1").input.shape[1:3]) <= 32


# The default model's size on main before any other shape was possible.
DEFAULT_PARAMETERS = 806_314
