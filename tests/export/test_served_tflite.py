"""A version served from its TFLite model answers as the SavedModel does: a real
`fmnist serve --prefer_tflite_model` over REST and gRPC, on real Fashion-MNIST images."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from fmnist import dataset
from fmnist.export import saved_model
from fmnist.serving.server.process import ServerProcess, start_server

MODEL = "fashion_mnist"


@pytest.fixture(scope="module")
def tflite_server(exported_bundle: Path, tmp_path_factory) -> Iterator[ServerProcess]:
    """The bundle served from model.tflite, its warm-up requests run at load."""
    server = start_server(
        "--prefer_tflite_model",
        "--enable_model_warmup=true",
        *("--model_name", MODEL, "--model_base_path", str(exported_bundle.parent)),
        log_dir=tmp_path_factory.mktemp("tflite-server"),
    )
    yield server
    assert server.stop() == 0, server.log()[-2000:]


@pytest.fixture(scope="module")
def confident(exported_bundle: Path, data_dir: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Test images whose float top-1 leads by a margin int8 rounding cannot close, and the
    SavedModel's answers for them."""
    images = dataset.load_test(data_dir).images[:400, ..., None]
    answers = saved_model.signature_outputs(exported_bundle, images)
    top2 = np.sort(answers["probabilities"], axis=1)[:, -2:]
    keep = (top2[:, 1] - top2[:, 0]) > 0.2
    assert keep.sum() >= 200
    return images[keep][:200], {k: v[keep][:200] for k, v in answers.items()}


def _check(outputs: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    probabilities, class_ids = outputs["probabilities"], outputs["class_ids"]
    assert probabilities.dtype == np.float32 and probabilities.shape == (len(class_ids), 10)
    assert class_ids.dtype == np.int64
    np.testing.assert_array_equal(class_ids, expected["class_ids"])  # the SavedModel's top-1
    np.testing.assert_array_equal(class_ids, probabilities.argmax(1))
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=0.05)  # int8 steps of 1/256
    np.testing.assert_allclose(probabilities, expected["probabilities"], atol=0.1)


def test_rest_answers_probabilities_and_class_ids(tflite_server, confident) -> None:
    images, expected = confident
    answer = requests.post(
        f"{tflite_server.rest_url}/v1/models/{MODEL}:predict",
        json={"instances": images.tolist()},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    rows = answer.json()["predictions"]
    assert set(rows[0]) == {"probabilities", "class_ids"}
    outputs = {
        "probabilities": np.array([row["probabilities"] for row in rows], np.float32),
        "class_ids": np.array([row["class_ids"] for row in rows], np.int64),
    }
    _check(outputs, expected)


def test_grpc_answers_probabilities_and_class_ids(tflite_server, confident) -> None:
    images, expected = confident
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
    with grpc.insecure_channel(tflite_server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(request, timeout=60)
    assert set(response.outputs) == {"probabilities", "class_ids"}
    outputs = {key: tf.make_ndarray(proto) for key, proto in response.outputs.items()}
    _check(outputs, expected)


def test_metadata_names_the_savedmodels_outputs(tflite_server) -> None:
    answer = requests.get(f"{tflite_server.rest_url}/v1/models/{MODEL}/metadata", timeout=30)
    assert answer.status_code == 200, answer.text
    signature = answer.json()["metadata"]["signature_def"]["signature_def"]["serving_default"]
    outputs = signature["outputs"]
    assert outputs["probabilities"]["dtype"] == "DT_FLOAT"
    assert outputs["class_ids"]["dtype"] == "DT_INT64"
    assert signature["inputs"]["images"]["dtype"] == "DT_UINT8"
