"""The TFLite models follow the input contract: any shape, any scaling, raw uint8 pixels in.

A small CNN learns a task a wrong pixel mapping would break (which quarter of the 0-255
range an image's brightness falls in), once per scaling; its int8 model must take the raw
pixels (input scale 1/255 or 1, zero point 0) and answer as the float model does, and the
served form must answer probabilities and class ids."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from fmnist.contract import InputContract
from fmnist.edge.runtime import select_runtime
from fmnist.export import tflite
from fmnist.export.int8_check import NotFullInteger, check_full_integer, layer_names
from fmnist.export.tflite_run import tflite_probabilities
from fmnist.export.tflite_serving import serving_model

SHAPE = (12, 10, 3)
CLASSES = ("darkest", "dark", "light", "lightest")
# The pixel scale of each scaling's float input; "model" scales inside the model.
INPUT_SCALE = {"unit": 1 / 255, "symmetric": 1 / 255, "raw": 1.0, "model": 1.0}


def _brightness_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images whose label is the quarter of 0-255 their mean falls in (noise around it)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), count)
    centres = labels * 64 + rng.integers(8, 56, count)
    noise = rng.integers(-6, 7, (count, *SHAPE))
    images = np.clip(centres[:, None, None, None] + noise, 0, 255).astype(np.uint8)
    return images, labels


def _trained(contract: InputContract) -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input(SHAPE)
    x = keras.layers.Rescaling(1 / 255)(inputs) if contract.scaling == "model" else inputs
    # The batch norm lets the same steps train on [0, 1], [-1, 1] and 0-255 inputs.
    # Seeded initializers and no shuffling: the same model whatever ran before in this
    # process (TensorFlow's unseeded ops draw from a per-process counter).
    seeded = keras.initializers.GlorotUniform
    conv = keras.layers.Conv2D(8, 3, kernel_initializer=seeded(seed=1))
    x = keras.layers.BatchNormalization(momentum=0.5)(conv(x))  # inference stats keep up
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
    head = keras.layers.Dense(len(CLASSES), activation="softmax", kernel_initializer=seeded(seed=2))
    model = keras.Model(inputs, head(x))
    images, labels = _brightness_images(1024, seed=1)
    model.compile(keras.optimizers.Adam(0.03), "sparse_categorical_crossentropy")
    model.fit(contract.scale(images), labels, epochs=25, batch_size=64, shuffle=False, verbose=0)
    return model


@pytest.fixture(scope="module", params=list(INPUT_SCALE))
def converted(request: pytest.FixtureRequest) -> tuple[InputContract, keras.Model, bytes]:
    contract = InputContract(*SHAPE, CLASSES, scaling=request.param)
    model = _trained(contract)
    calibration, _ = _brightness_images(100, seed=2)
    return contract, model, tflite.convert_int8(model, calibration, contract)


def test_int8_input_takes_raw_uint8_pixels(converted) -> None:
    contract, _, content = converted
    interpreter = select_runtime().interpreter_class(model_content=content)
    (inp,) = interpreter.get_input_details()
    assert inp["dtype"] == np.uint8 and list(inp["shape"]) == [1, *SHAPE]
    scale, zero_point = inp["quantization"]
    assert zero_point == 0 and scale == pytest.approx(INPUT_SCALE[contract.scaling], rel=1e-6)


def test_int8_answers_as_the_float_model_on_raw_pixels(converted) -> None:
    contract, model, content = converted
    images, labels = _brightness_images(400, seed=3)
    expected = model.predict(contract.scale(images), verbose=0)
    assert (expected.argmax(1) == labels).mean() >= 0.9  # the task was learnt
    got = tflite_probabilities(content, images, contract, select_runtime())
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.97
    assert np.abs(got - expected).mean() < 0.02


def test_float32_model_takes_the_scaled_input(converted) -> None:
    contract, model, _ = converted
    content = tflite.convert_float32(model, contract)
    images, _ = _brightness_images(64, seed=4)
    got = tflite_probabilities(content, images, contract, select_runtime())
    expected = model.predict(contract.scale(images), verbose=0)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_served_model_answers_probabilities_and_class_ids(converted) -> None:
    contract, _, content = converted
    interpreter = select_runtime().interpreter_class(model_content=serving_model(content))
    outputs = {d["name"]: d for d in interpreter.get_output_details()}
    assert outputs["probabilities"]["dtype"] == np.float32
    assert list(outputs["probabilities"]["shape_signature"]) == [-1, len(CLASSES)]
    assert outputs["class_ids"]["dtype"] == np.int64
    images, _ = _brightness_images(32, seed=5)
    (inp,) = interpreter.get_input_details()
    interpreter.resize_tensor_input(inp["index"], images.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], images)
    interpreter.invoke()
    probabilities = interpreter.get_tensor(outputs["probabilities"]["index"])
    class_ids = interpreter.get_tensor(outputs["class_ids"]["index"])
    # Exactly the int8 model's scores, dequantized, and their argmax.
    expected = tflite_probabilities(content, images, contract, select_runtime())
    np.testing.assert_array_equal(probabilities, expected)
    np.testing.assert_array_equal(class_ids, expected.argmax(1))


@keras.saving.register_keras_serializable(package="fmnist_tests")
class Sine(keras.layers.Layer):
    """A user's custom layer whose op (SIN) has no int8 kernel in TFLite."""

    def call(self, inputs):
        return keras.ops.sin(inputs)


def test_an_op_without_an_int8_kernel_is_named_with_its_layer() -> None:
    contract = InputContract(*SHAPE, CLASSES, scaling="unit")
    inputs = keras.Input(SHAPE)
    x = Sine(name="wavy")(keras.layers.Conv2D(4, 3)(inputs))
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(len(CLASSES), activation="softmax")(x))
    calibration, _ = _brightness_images(20, seed=6)
    content = tflite.convert_int8(model, calibration, contract)
    with pytest.raises(NotFullInteger) as caught:
        check_full_integer(content, layer_names(model))
    assert str(caught.value) == "int8: op SIN in layer 'wavy' has no full-integer int8 kernel"
