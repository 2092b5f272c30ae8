"""`fmnist serve --prefer_tflite_model` on TF Serving's own half_plus_two_tflite model, and the
REST status and metadata JSON (TF Serving's messages printed as its REST API prints them)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import requests

from fmnist.serving.server.api import responses
from fmnist.serving.server.core.data_plane import Answered
from fmnist.serving.server.core.registry import VersionStatus
from fmnist.serving.server.servables.saved_model import SavedModelServable
from fmnist.serving.server.servables.tflite import TfliteServable

TFLITE_MODEL = "saved_model_half_plus_two_tflite/00000123"
SAVED_MODEL = "saved_model_half_plus_two_cpu/00000123"


def test_status_json_is_tf_servings() -> None:
    statuses = [
        VersionStatus(124, "AVAILABLE"),
        VersionStatus(123, "END", "a SavedModel needs TensorFlow"),
        VersionStatus(2**40, "LOADING"),
    ]
    ok = {"error_code": "OK", "error_message": ""}
    assert responses.as_json(responses.model_status_response(statuses)) == {
        "model_version_status": [
            {"version": "124", "state": "AVAILABLE", "status": ok},
            {
                "version": "123",
                "state": "END",
                "status": {
                    "error_code": "UNKNOWN",
                    "error_message": "a SavedModel needs TensorFlow",
                },
            },
            {"version": str(2**40), "state": "LOADING", "status": ok},
        ]
    }


def test_saved_model_metadata_json_is_tf_servings(serving_fixtures: Path) -> None:
    model = SavedModelServable(serving_fixtures / SAVED_MODEL)
    try:
        metadata = responses.metadata_json(Answered("half_plus_two", 123), model.metadata())
    finally:
        model.close()
    fixture = json.loads((serving_fixtures / "half_plus_two_model_metadata.json").read_text())
    fixture["model_spec"]["name"] = "half_plus_two"  # the fixture was served as "default"
    assert metadata == fixture


def test_tflite_metadata_json_describes_its_tensors(serving_fixtures: Path) -> None:
    model = TfliteServable(serving_fixtures / TFLITE_MODEL)
    try:
        metadata = responses.metadata_json(Answered("m", 1), model.metadata())
    finally:
        model.close()
    shape = {"dim": [{"size": "1", "name": ""}] * 2, "unknown_rank": False}
    assert metadata["metadata"]["signature_def"] == {
        "signature_def": {
            "serving_default": {
                "inputs": {"x": {"name": "x", "dtype": "DT_FLOAT", "tensor_shape": shape}},
                "outputs": {"y": {"name": "y", "dtype": "DT_FLOAT", "tensor_shape": shape}},
                "method_name": "tensorflow/serving/predict",
                "defaults": {},
            }
        }
    }


# --- a real server --------------------------------------------------------------------------


@pytest.fixture
def tflite_server(serving_fixtures: Path, model_server, tmp_path: Path):
    """half_plus_two_tflite as version 123 (label `stable`), polled every 0.2 s, plus a
    model `mixed` whose version 1 is model.tflite and version 2 only a SavedModel."""
    base = tmp_path / "half_plus_two"
    shutil.copytree(serving_fixtures / TFLITE_MODEL, base / "123")
    mixed = tmp_path / "mixed"
    shutil.copytree(serving_fixtures / TFLITE_MODEL, mixed / "1")
    shutil.copytree(serving_fixtures / "saved_model_half_plus_three/00000123", mixed / "2")
    config = tmp_path / "models.config"
    config.write_text(
        "model_config_list {\n"
        f'  config {{ name: "half_plus_two" base_path: "{base}" model_platform: "tensorflow"\n'
        '    version_labels { key: "stable" value: 123 } }\n'
        f'  config {{ name: "mixed" base_path: "{mixed}" model_platform: "tensorflow"\n'
        "    model_version_policy { all {} } }\n"
        "}\n"
    )
    server = model_server(
        "--prefer_tflite_model",
        *("--model_config_file", str(config)),
        *("--file_system_poll_wait_seconds", "0.2"),
    )
    return server, base


def _post(server, path: str, body: dict) -> requests.Response:
    return requests.post(f"{server.rest_url}/v1/models/{path}", json=body, timeout=30)


def test_predict_row_and_columnar_as_tf_serving_documents(tflite_server) -> None:
    server, _ = tflite_server
    row = _post(server, "half_plus_two:predict", {"instances": [1.0, 2.0, 5.0]})
    assert row.status_code == 200, row.text
    assert row.json() == {"predictions": [2.5, 3.0, 4.5]}
    body = {"signature_name": "serving_default", "inputs": [3.0, 4.0]}
    columnar = _post(server, "half_plus_two/labels/stable:predict", body)
    assert columnar.status_code == 200, columnar.text
    assert columnar.json() == {"outputs": [3.5, 4.0]}


def test_metadata_and_status_of_a_tflite_version(tflite_server) -> None:
    server, _ = tflite_server
    metadata = requests.get(f"{server.rest_url}/v1/models/half_plus_two/metadata", timeout=30)
    assert metadata.status_code == 200, metadata.text
    signature = metadata.json()["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["method_name"] == "tensorflow/serving/predict"
    assert signature["inputs"]["x"]["tensor_shape"]["dim"] == [
        {"size": "1", "name": ""},
        {"size": "1", "name": ""},
    ]
    status = requests.get(f"{server.rest_url}/v1/models/half_plus_two", timeout=30)
    assert status.json() == {
        "model_version_status": [
            {
                "version": "123",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }


def test_each_version_directory_picks_its_loader(tflite_server) -> None:
    server, _ = tflite_server
    tflite = _post(server, "mixed/versions/1:predict", {"instances": [1.0]})
    saved_model = _post(server, "mixed/versions/2:predict", {"instances": [1.0]})
    assert tflite.json() == {"predictions": [2.5]}  # half_plus_two's model.tflite
    assert saved_model.json() == {"predictions": [3.5]}  # half_plus_three's SavedModel


def test_a_new_tflite_version_is_polled_in(tflite_server, serving_fixtures: Path, publish) -> None:
    server, base = tflite_server
    publish(serving_fixtures / TFLITE_MODEL, base, 124)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = requests.get(f"{server.rest_url}/v1/models/half_plus_two", timeout=30).json()
        versions = {s["version"]: s["state"] for s in status["model_version_status"]}
        if versions.get("124") == "AVAILABLE":
            break
        time.sleep(0.1)
    assert versions.get("124") == "AVAILABLE", status
    answer = _post(server, "half_plus_two/versions/124:predict", {"instances": [4.0]})
    assert answer.json() == {"predictions": [4.0]}


def test_a_version_that_aborts_the_runtime_fails_alone(
    tflite_server, aborting_tflite: Path, publish
) -> None:
    server, base = tflite_server
    publish(aborting_tflite, base, 125)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = requests.get(f"{server.rest_url}/v1/models/half_plus_two", timeout=30).json()
        states = {s["version"]: s for s in status["model_version_status"]}
        if states.get("125", {}).get("state") == "END":
            break
        time.sleep(0.1)
    assert states["125"]["state"] == "END", status
    assert "SIGABRT" in states["125"]["status"]["error_message"]
    answer = _post(server, "half_plus_two/versions/123:predict", {"instances": [4.0]})
    assert answer.json() == {"predictions": [4.0]}
