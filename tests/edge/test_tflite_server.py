"""`fmnist serve --prefer_tflite_model` in an environment without TensorFlow: REST answers as
TF Serving's, gRPC left out with one line, and a SavedModel-only version fails its load
with one line saying why. Runs in the TF-free interpreter ($FMNIST_TFLITE_RUNTIME_PYTHON,
or this one when it has no TensorFlow)."""

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

import pytest

from fmnist.serving.server.process import ServerProcess, start_server

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


def test_tflite_version_serves_rest_without_tensorflow(serve, serving_fixtures: Path, tmp_path):
    base = tmp_path / "half_plus_two"
    shutil.copytree(serving_fixtures / TFLITE_MODEL, base / "123")
    server = serve(
        "--prefer_tflite_model", "--model_name", "half_plus_two", "--model_base_path", str(base)
    )
    assert server.grpc_port is None  # the ready line says `gRPC disabled`
    log = server.log()
    assert "gRPC API needs TensorFlow's protos" in log
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
    assert _tensorflow_mapped(server.process.pid) == []


def test_classify_without_tensorflow_is_a_clear_unimplemented(serve, serving_fixtures, tmp_path):
    base = tmp_path / "half_plus_two"
    shutil.copytree(serving_fixtures / TFLITE_MODEL, base / "1")
    server = serve("--prefer_tflite_model", "--model_base_path", str(base))
    code, answer = _request(server, "default:classify", {"examples": [{"x": 1.0}]})
    assert code == 501
    assert "need TensorFlow's tf.Example protos" in answer["error"]


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
