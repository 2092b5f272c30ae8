"""A batch of zero rows answers alike on every servable: OK, with empty outputs of the declared
shapes (as TF Serving's SavedModel does; a TFLite runtime would refuse to run it). Checked
on the servables, on a two-output TFLite model of any image shape (the kind issue 48
exports), and over gRPC against every server configuration."""

from __future__ import annotations

import shutil
from pathlib import Path

import grpc
import numpy as np
import pytest

from fmnist.serving.server.servables.saved_model import SavedModelServable
from fmnist.serving.server.servables.tflite import TFLITE_FILE, TfliteServable
from fmnist.serving.wire import messages as pb
from fmnist.serving.wire.tensor_proto import to_ndarray, to_tensor_proto

pytestmark = pytest.mark.integration

IMAGES = np.zeros((0, 28, 28, 1), np.uint8)


def test_the_saved_model_and_its_tflite_copy_answer_zero_rows_alike(exported_bundle: Path):
    saved_model = SavedModelServable(exported_bundle)
    try:
        _, from_saved_model = saved_model.predict("", {"images": IMAGES})
    finally:
        saved_model.close()
    _, from_tflite = TfliteServable(exported_bundle).predict("", {"images": IMAGES})
    assert {k: v.shape for k, v in from_saved_model.items()} == {
        "probabilities": (0, 10),
        "class_ids": (0,),
    }
    # model.tflite answers as the SavedModel does (the int8 model, dequantized, with argmax).
    assert {k: (v.shape, v.dtype) for k, v in from_tflite.items()} == {
        "probabilities": ((0, 10), np.float32),
        "class_ids": ((0,), np.int64),
    }


@pytest.fixture(scope="module")
def two_outputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A float model.tflite: uint8 images [-1, 32, 32, 3] -> probabilities float32 [-1, 5]
    and class_ids int64 [-1], in the version directory it returns."""
    import tensorflow as tf

    weights = tf.random.stateless_normal([32 * 32 * 3, 5], [1, 2])

    @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.uint8, name="images")])
    def serve(images):
        pixels = tf.reshape(tf.cast(images, tf.float32) / 255.0, [-1, 32 * 32 * 3])
        probabilities = tf.nn.softmax(pixels @ weights)
        return {"probabilities": probabilities, "class_ids": tf.argmax(probabilities, axis=1)}

    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()])
    version = tmp_path_factory.mktemp("two-outputs") / "1"
    version.mkdir()
    (version / TFLITE_FILE).write_bytes(converter.convert())
    return version


@pytest.mark.parametrize("rows", [3, 0])
def test_a_two_output_tflite_model_answers_each_output(two_outputs: Path, rows: int):
    model = TfliteServable(two_outputs)
    (signature,) = model.signatures.values()
    (images,) = signature.inputs
    images_in = np.random.default_rng(rows).integers(0, 256, (rows, 32, 32, 3), dtype=np.uint8)
    _, outputs = model.predict("", {images: images_in})
    by_dtype = {v.dtype: v for v in outputs.values()}
    assert sorted(v.shape for v in outputs.values()) == [(rows,), (rows, 5)]
    probabilities, class_ids = by_dtype[np.dtype(np.float32)], by_dtype[np.dtype(np.int64)]
    np.testing.assert_array_equal(class_ids, probabilities.argmax(axis=1))


BATCHING = "max_batch_size { value: 8 }\nbatch_timeout_micros { value: 1000 }\n"


@pytest.mark.parametrize("flags", [[], ["--prefer_tflite_model"]], ids=["saved_model", "tflite"])
@pytest.mark.parametrize("batching", [False, True], ids=["alone", "batching"])
def test_a_zero_row_predict_is_ok_and_empty_over_grpc(
    model_server, exported_bundle: Path, tmp_path: Path, flags, batching
):
    base = tmp_path / "fashion_mnist"
    shutil.copytree(exported_bundle, base / "1")
    if batching:
        (tmp_path / "batching.config").write_text(BATCHING)
        flags = [*flags, "--enable_batching", "--batching_parameters_file"]
        flags.append(str(tmp_path / "batching.config"))
    server = model_server("--model_name", "fashion_mnist", "--model_base_path", str(base), *flags)
    request = pb.PredictRequest()
    request.model_spec.name = "fashion_mnist"
    request.inputs["images"].CopyFrom(to_tensor_proto(IMAGES))
    with grpc.insecure_channel(server.grpc_target) as channel:
        predict = channel.unary_unary(
            f"/{pb.PREDICTION_SERVICE}/Predict",
            request_serializer=pb.PredictRequest.SerializeToString,
            response_deserializer=pb.PredictResponse.FromString,
        )
        response = predict(request, timeout=30)
    outputs = {alias: to_ndarray(proto) for alias, proto in response.outputs.items()}
    assert outputs and all(value.shape[0] == 0 for value in outputs.values())
    assert response.model_spec.version.value == 1
