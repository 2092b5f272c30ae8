"""`fmnist serve --prefer_tflite_model` in an environment without TensorFlow: gRPC and REST
answer as TF Serving's, warm-up files replay, and a SavedModel-only version fails its load
with one line saying why. The server runs in the TF-free interpreter
($FMNIST_TFLITE_RUNTIME_PYTHON, or this one when it has no TensorFlow); the gRPC calls use
the project's own client and messages, which need no TensorFlow either."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest

from fmnist.serving.client import GrpcClient
from fmnist.serving.server.process import ServerProcess, start_server
from fmnist.serving.wire import messages as pb
from fmnist.serving.wire.tensor_proto import to_tensor_proto
from fmnist.serving.wire.tfrecord import write_records

TFLITE_RUNTIME_PYTHON = "FMNIST_TFLITE_RUNTIME_PYTHON"
TFLITE_MODEL = "saved_model_half_plus_two_tflite/00000123"
SAVED_MODEL_NEEDS_TF = "a SavedModel needs TensorFlow, which is not installed"


@pytest.fixture(scope="module")
def tf_free_python() -> str:
    """A Python that has fmnist and a TFLite runtime but no TensorFlow."""
    if importlib.util.find_spec("tensorflow") is None:
        python = sys.executable
    elif os.environ.get(TFLITE_RUNTIME_PYTHON):
        python = os.environ[TFLITE_RUNTIME_PYTHON]
    else:
        pytest.skip(f"TensorFlow is installed here and {TFLITE_RUNTIME_PYTHON} is not set")
    probe = subprocess.run(
        [python, "-c", "import importlib.util as u; print(u.find_spec('tensorflow') is None)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.stdout.strip() == "True", f"{python} has TensorFlow: {probe.stderr}"
    return python


@pytest.fixture
def serve(tf_free_python: str, tmp_path: Path):
    started: list[ServerProcess] = []

    def start(*flags: str) -> ServerProcess:
        server = start_server(*flags, log_dir=tmp_path / "logs", python=tf_free_python)
        started.append(server)
        return server

    yield start
    for server in started:
        assert server.stop() == 0, server.log()[-2000:]


def _request(server: ServerProcess, path: str, body: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{server.rest_url}/v1/models/{path}", data=data)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _tensorflow_mapped(pid: int) -> list[str]:
    """Files of a `tensorflow` package mapped into the process (tflite_runtime's own
    `_pywrap_tensorflow_interpreter_wrapper` is not one)."""
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return [line for line in maps if f"{os.sep}tensorflow{os.sep}" in line]


def _call(server: ServerProcess, service: str, method: str, request):
    """One unary gRPC call with the project's messages; (code name, response or details)."""
    _, response_type = pb.SERVICES[service][method]
    with grpc.insecure_channel(server.grpc_target) as channel:
        call = channel.unary_unary(
            f"/{service}/{method}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=response_type.FromString,
        )
        try:
            return "OK", call(request, timeout=30)
        except grpc.RpcError as err:
            return err.code().name, err.details()


def test_tflite_version_serves_grpc_and_rest_without_tensorflow(
    serve, serving_fixtures: Path, tmp_path
):
    base = tmp_path / "half_plus_two"
    shutil.copytree(serving_fixtures / TFLITE_MODEL, base / "123")
    server = serve(
        "--prefer_tflite_model", "--model_name", "half_plus_two", "--model_base_path", str(base)
    )
    log = server.log()
    assert "--enable_profiler: TensorFlow is not installed; no profiler service" in log
    assert "Running gRPC ModelServer at 127.0.0.1:" in log
    assert "Exporting HTTP/REST API at:127.0.0.1:" in log
    assert _request(server, "half_plus_two:predict", {"instances": [1.0, 2.0, 5.0]}) == (
        200,
        {"predictions": [2.5, 3.0, 4.5]},
    )
    assert _request(server, "half_plus_two:predict", {"inputs": [3.0, 4.0]}) == (
        200,
        {"outputs": [3.5, 4.0]},
    )
    code, metadata = _request(server, "half_plus_two/versions/123/metadata")
    assert code == 200
    assert metadata["model_spec"] == {
        "name": "half_plus_two",
        "signature_name": "",
        "version": "123",
    }
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["method_name"] == "tensorflow/serving/predict"
    assert sorted(signature["inputs"]) == ["x"] and sorted(signature["outputs"]) == ["y"]
    code, status = _request(server, "half_plus_two")
    assert (code, status["model_version_status"][0]["state"]) == (200, "AVAILABLE")
    with GrpcClient(server.grpc_target, "half_plus_two") as client:
        x = np.array([[1.0], [2.0], [5.0]], np.float32)
        outputs, version = client.predict_raw({"x": x})
        assert version == 123
        np.testing.assert_array_equal(outputs["y"], [[2.5], [3.0], [4.5]])
        grpc_signature = client.metadata()["metadata"]["signature_def"]["signature_def"]
        assert grpc_signature["serving_default"]["inputs"]["x"]["name"] == "x"
        assert grpc_signature["serving_default"]["method_name"] == signature["method_name"]
        assert client.status() == [
            {"version": 123, "state": "AVAILABLE", "error_code": 0, "error_message": ""}
        ]
    assert _tensorflow_mapped(server.process.pid) == []


def test_classify_on_a_tflite_model_fails_as_tf_serving_does(serve, serving_fixtures, tmp_path):
    """TF Serving checks a TFLite signature as any other: half_plus_two's input is `x`, not
    the `inputs` a classify signature needs."""
    base = tmp_path / "half_plus_two"
    shutil.copytree(serving_fixtures / TFLITE_MODEL, base / "1")
    server = serve("--prefer_tflite_model", "--model_base_path", str(base))
    message = "No classification inputs found in SignatureDef."
    assert _request(server, "default:classify", {"examples": [{"x": 1.0}]}) == (
        400,
        {"error": message},
    )
    request = pb.ClassificationRequest()
    request.model_spec.name = "default"
    request.input.example_list.examples.add().features.feature["x"].float_list.value.append(1)
    assert _call(server, pb.PREDICTION_SERVICE, "Classify", request) == (
        "INVALID_ARGUMENT",
        message,
    )


def test_health_and_config_reload_without_tensorflow(serve, serving_fixtures, tmp_path):
    base = tmp_path / "half_plus_two"
    shutil.copytree(serving_fixtures / TFLITE_MODEL, base / "1")
    server = serve(
        "--prefer_tflite_model",
        "--model_base_path",
        str(base),
        "--enable_grpc_healthcheck_service",
    )
    code, health = _call(server, pb.HEALTH_SERVICE, "Check", pb.HealthCheckRequest())
    assert (code, health.status) == ("OK", pb.HealthCheckResponse.SERVING)
    reload = pb.ReloadConfigRequest()
    entry = reload.config.model_config_list.config.add(name="hp2", base_path=str(base))
    entry.model_platform = "tensorflow"
    assert _call(server, pb.MODEL_SERVICE, "HandleReloadConfigRequest", reload)[0] == "OK"
    assert _request(server, "hp2:predict", {"instances": [1.0]}) == (200, {"predictions": [2.5]})
    assert _request(server, "default")[0] == 404


def _warmup_record(value: float) -> bytes:
    log = pb.PredictionLog()
    log.predict_log.request.model_spec.name = "default"
    log.predict_log.request.inputs["x"].CopyFrom(to_tensor_proto(np.float32([[value]])))
    return log.SerializeToString()


def test_warmup_replays_without_tensorflow(serve, serving_fixtures, tmp_path):
    base = tmp_path / "half_plus_two"
    shutil.copytree(serving_fixtures / TFLITE_MODEL, base / "1")
    (base / "1" / "assets.extra").mkdir()
    write_records(base / "1/assets.extra/tf_serving_warmup_requests", [_warmup_record(1.0)] * 3)
    server = serve("--prefer_tflite_model", "--model_base_path", str(base))
    assert "Number of warmup records read: 3." in server.log()
    assert _request(server, "default:predict", {"instances": [1.0]}) == (
        200,
        {"predictions": [2.5]},
    )


def test_corrupt_warmup_file_fails_the_load_without_tensorflow(serve, serving_fixtures, tmp_path):
    base = tmp_path / "half_plus_two"
    shutil.copytree(serving_fixtures / TFLITE_MODEL, base / "1")
    (base / "1" / "assets.extra").mkdir()
    warmup = base / "1/assets.extra/tf_serving_warmup_requests"
    write_records(warmup, [_warmup_record(1.0)])
    data = bytearray(warmup.read_bytes())
    data[14] ^= 0xFF  # inside the record's data: its checksum no longer matches
    warmup.write_bytes(bytes(data))
    server = serve("--prefer_tflite_model", "--model_base_path", str(base))
    code, status = _request(server, "default")
    (version,) = status["model_version_status"]
    assert (code, version["state"]) == (200, "END")
    assert "Failed to read warmup record" in version["status"]["error_message"]
    assert "corrupted record at 0" in version["status"]["error_message"]


def test_saved_model_version_without_tensorflow_fails_its_load_in_one_line(
    serve, serving_fixtures: Path, tmp_path: Path
):
    base = tmp_path / "half_plus_two"
    shutil.copytree(serving_fixtures / "saved_model_half_plus_two_cpu/00000123", base / "123")
    server = serve("--prefer_tflite_model", "--model_base_path", str(base))
    code, status = _request(server, "default")
    assert code == 200
    (version,) = status["model_version_status"]
    assert (version["version"], version["state"]) == ("123", "END")
    assert version["status"]["error_code"] == "UNKNOWN"
    message = version["status"]["error_message"]
    assert message.startswith(SAVED_MODEL_NEEDS_TF) and "\n" not in message
    assert "--prefer_tflite_model" in message
    assert _request(server, "default:predict", {"instances": [1.0]})[0] == 404


def test_model_config_file_with_labels_without_tensorflow(serve, serving_fixtures, tmp_path):
    base = tmp_path / "half_plus_two"
    shutil.copytree(serving_fixtures / TFLITE_MODEL, base / "123")
    config = tmp_path / "models.config"
    config.write_text(
        f'model_config_list {{ config {{ name: "hp2" base_path: "{base}" '
        'version_labels { key: "stable" value: 123 } } }'
    )
    server = serve("--prefer_tflite_model", "--model_config_file", str(config))
    answer = _request(server, "hp2/labels/stable:predict", {"instances": [1.0]})
    assert answer == (200, {"predictions": [2.5]})
