"""--enable_model_warmup: TF Serving's warm-up replay before a version becomes AVAILABLE,
against real `fmnist serve` processes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    predict_pb2,
    prediction_log_pb2,
    regression_pb2,
)

pytestmark = pytest.mark.integration

WARMUP = Path("assets.extra") / "tf_serving_warmup_requests"
CLASSIFY, REGRESS = "tensorflow/serving/classify", "tensorflow/serving/regress"


def example_input(message, x: float) -> None:
    example = message.input.example_list.examples.add()
    example.features.feature["x"].float_list.value.append(x)


def warmup_logs(predict_input: str = "x") -> list[prediction_log_pb2.PredictionLog]:
    """One record of each kind TF Serving replays, for half_plus_two."""
    predict = predict_pb2.PredictRequest()
    predict.model_spec.name = "hp"
    predict.inputs[predict_input].CopyFrom(tf.make_tensor_proto(np.float32([[1.0]])))
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.signature_name = "classify_x_to_y"
    example_input(classify, 2.0)
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.signature_name = "regress_x_to_y"
    example_input(regress, 2.0)
    multi = inference_pb2.MultiInferenceRequest()
    example_input(multi, 2.0)
    for signature, method in (("classify_x_to_y", CLASSIFY), ("regress_x_to_y", REGRESS)):
        task = multi.tasks.add(method_name=method)
        task.model_spec.name, task.model_spec.signature_name = "hp", signature
    log = prediction_log_pb2
    return [
        log.PredictionLog(predict_log=log.PredictLog(request=predict)),
        log.PredictionLog(classify_log=log.ClassifyLog(request=classify)),
        log.PredictionLog(regress_log=log.RegressLog(request=regress)),
        log.PredictionLog(multi_inference_log=log.MultiInferenceLog(request=multi)),
    ]


def write_records(path: Path, records: list[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)


def hp_version(serving_fixtures: Path, base: Path, version: int) -> Path:
    target = base / str(version)
    shutil.copytree(serving_fixtures / "saved_model_half_plus_two_cpu" / "00000123", target)
    return target


def serve_all_versions(model_server, base: Path, tmp_path: Path, *flags: str):
    config = tmp_path / "models.config"
    config.write_text(
        f'model_config_list {{ config {{ name: "hp" base_path: "{base}" '
        "model_version_policy { all {} } } }"
    )
    return model_server("--model_config_file", str(config), *flags)


def states(server) -> dict[int, tuple[str, str]]:
    answer = requests.get(f"{server.rest_url}/v1/models/hp", timeout=30).json()
    return {
        int(s["version"]): (s["state"], s["status"].get("error_message", ""))
        for s in answer["model_version_status"]
    }


@pytest.fixture
def versions(serving_fixtures: Path, tmp_path: Path) -> Path:
    """hp/1: a good warm-up file of all four request kinds; hp/2: a corrupt one (not a
    TFRecord); hp/3: a readable file whose Predict names a missing input."""
    base = tmp_path / "hp"
    good = [log.SerializeToString() for log in warmup_logs()]
    write_records(hp_version(serving_fixtures, base, 1) / WARMUP, good)
    corrupt = hp_version(serving_fixtures, base, 2) / WARMUP
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b"\x07this is not a TFRecord file at all\x00" * 4)
    failing = [log.SerializeToString() for log in warmup_logs(predict_input="nope")]
    write_records(hp_version(serving_fixtures, base, 3) / WARMUP, failing)
    return base


def test_only_versions_whose_warmup_replays_become_available(model_server, versions, tmp_path):
    server = serve_all_versions(model_server, versions, tmp_path)
    status = states(server)
    assert status[1] == ("AVAILABLE", "")
    assert status[2][0] == "END"
    assert "warmup" in status[2][1]
    assert status[3][0] == "END"
    assert "predict_log" in status[3][1]
    assert "Number of warmup records read: 4." in server.log()


def test_warmup_can_be_turned_off(model_server, versions, tmp_path):
    server = serve_all_versions(model_server, versions, tmp_path, "--enable_model_warmup=false")
    assert {v: s[0] for v, s in states(server).items()} == {
        1: "AVAILABLE",
        2: "AVAILABLE",
        3: "AVAILABLE",
    }
    assert "Finished reading warmup data" not in server.log()


def test_too_many_records_fail_the_load(model_server, serving_fixtures, tmp_path):
    base = tmp_path / "hp"
    record = warmup_logs()[0].SerializeToString()
    write_records(hp_version(serving_fixtures, base, 1) / WARMUP, [record] * 1001)
    server = serve_all_versions(model_server, base, tmp_path)
    state, error = states(server)[1]
    assert state == "END"
    assert "exceeds the maximum (1000)" in error


def test_our_exports_warmup_file_replays(model_server, fmnist_models, tmp_path):
    from fmnist.export.saved_model import write_warmup

    base = tmp_path / "fm"
    version = base / "1"
    shutil.copytree(fmnist_models[3], version)
    images = np.zeros((8, 28, 28), np.uint8)
    write_warmup(version, "fm", images, (1, 8))
    server = model_server("--model_name", "fm", "--model_base_path", str(base))
    status = requests.get(f"{server.rest_url}/v1/models/fm", timeout=30).json()
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    assert "Number of warmup records read: 2." in server.log()
