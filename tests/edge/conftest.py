"""The bundle the edge tests run on: exported here, or by the main environment (TF-free runs)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

EDGE_BUNDLE_ENV = "FMNIST_EDGE_BUNDLE"


@pytest.fixture(scope="session")
def edge_bundle(request: pytest.FixtureRequest) -> Path:
    """A real exported bundle: $FMNIST_EDGE_BUNDLE if set (the TF-free CI environment runs
    against a bundle the TensorFlow environment exported), else the session's own export."""
    if os.environ.get(EDGE_BUNDLE_ENV):
        bundle = Path(os.environ[EDGE_BUNDLE_ENV])
        assert (bundle / "manifest.json").is_file(), f"{EDGE_BUNDLE_ENV}={bundle} is no bundle"
        return bundle
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        pytest.skip(f"no TensorFlow to export a bundle and {EDGE_BUNDLE_ENV} is not set")
    return request.getfixturevalue("exported_bundle")


# --- classifiers of other shapes, converted here from tiny Keras models ---------------------

COLOUR_SHAPE = (32, 32, 3)
COLOUR_CLASSES = 5


def tiny_keras_classifier(shape: tuple[int, int, int], classes: int, seed: int = 0):
    """A small untrained CNN taking float [0, 1] pixels: enough to tell outputs apart."""
    import keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input(shape),
            keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(classes * 4, activation="relu"),
            keras.layers.Dense(classes, activation="softmax"),
        ]
    )


def tflite_of(model, shape: tuple[int, int, int], kind: str) -> bytes:
    """`model` as TFLite: "float32", or full-integer "uint8"/"int8" input (int8 output)."""
    import numpy as np
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if kind != "float32":
        rng = np.random.default_rng(0)
        extremes = [np.zeros((1, *shape), np.float32), np.ones((1, *shape), np.float32)]
        samples = [rng.random((1, *shape), dtype=np.float32) for _ in range(16)]
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([s] for s in extremes + samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8 if kind == "uint8" else tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def two_output_tflite(model, shape: tuple[int, int, int]) -> bytes:
    """`model` behind the SavedModel's signature: uint8 images -> probabilities, class_ids."""
    import keras
    import tensorflow as tf

    images = keras.Input(shape, dtype="uint8", name="images")
    probabilities = model(keras.layers.Rescaling(1 / 255)(images))
    # A Lambda: keras.ops.argmax converts to an op TFLite lacks (BitwiseAnd).
    class_ids = keras.layers.Lambda(lambda p: tf.argmax(p, axis=1))(probabilities)
    wrapped = keras.Model(images, {"probabilities": probabilities, "class_ids": class_ids})
    return tf.lite.TFLiteConverter.from_keras_model(wrapped).convert()


@pytest.fixture(scope="session")
def colour_models(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A 32x32x3, 5-class Keras model and its TFLite forms: {"keras": model, kind: path} for
    kinds float32, uint8 (input), int8 (input), two_outputs (uint8 in, probabilities and
    class ids out)."""
    pytest.importorskip("tensorflow")
    folder = tmp_path_factory.mktemp("colour-models")
    model = tiny_keras_classifier(COLOUR_SHAPE, COLOUR_CLASSES)
    models = {"keras": model, "folder": folder}
    for kind in ("float32", "uint8", "int8"):
        models[kind] = folder / f"colour_{kind}.tflite"
        models[kind].write_bytes(tflite_of(model, COLOUR_SHAPE, kind))
    models["two_outputs"] = folder / "colour_two_outputs.tflite"
    models["two_outputs"].write_bytes(two_output_tflite(model, COLOUR_SHAPE))
    return models
