"""`fmnist serve --prefer_tflite_model` on TF Serving's own half_plus_two_tflite model, and the
REST JSON builders that need no TensorFlow checked against the proto path they replace."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import requests
from google.protobuf import json_format
from tensorflow_serving.apis import model_pb2

from fmnist.serving.server import responses, rest_json
from fmnist.serving.server.registry import Servable, VersionStatus
from fmnist.serving.server.saved_model import SavedModelVersion
from fmnist.serving.server.tflite_model import TfliteModel
from fmnist.serving.wire.signature import signature_def_map_json

TFLITE_MODEL = "saved_model_half_plus_two_tflite/00000123"
SAVED_MODEL = "saved_model_half_plus_two_cpu/00000123"
PROTO_JSON = {"always_print_fields_with_no_presence": True, "preserving_proto_field_name": True}


def _proto_metadata_json(servable: Servable) -> dict:
    """The REST metadata as it was built before: protos rendered by json_format."""
    spec = model_pb2.ModelSpec()
    responses.fill_model_spec(spec, servable)
    signature_map = json_format.MessageToDict(responses.signature_def_map(servable), **PROTO_JSON)
    return {
        "model_spec": json_format.MessageToDict(spec, **PROTO_JSON),
        "metadata": {"signature_def": signature_map},
    }


def test_status_json_is_the_protos_json() -> None:
    statuses = [
        VersionStatus(124, "AVAILABLE"),
        VersionStatus(123, "END", "a SavedModel needs TensorFlow"),
        VersionStatus(2**40, "LOADING"),
    ]
    proto = responses.model_status_response(statuses)
    expected = json_format.MessageToDict(proto, always_print_fields_with_no_presence=True)
    assert rest_json.model_status_json(statuses) == expected


def test_saved_model_metadata_json_is_the_protos_json_and_tf_servings(
    serving_fixtures: Path,
) -> None:
    model = SavedModelVersion(serving_fixtures / SAVED_MODEL)
    try:
        servable = Servable("half_plus_two", 123, model.path, model=model)
        metadata = rest_json.metadata_json(servable)
        assert metadata == _proto_metadata_json(servable)
        fixture = json.loads((serving_fixtures / "half_plus_two_model_metadata.json").read_text())
        fixture["model_spec"]["name"] = "half_plus_two"  # the fixture was served as "default"
        assert metadata == fixture
    finally:
        model.close()


def test_tflite_signature_json_is_the_protos_json(serving_fixtures: Path) -> None:
    model = TfliteModel(serving_fixtures / TFLITE_MODEL)
    try:
        protos = json_format.MessageToDict(
            responses.signature_def_map(Servable("m", 1, model.path, model=model)), **PROTO_JSON
        )
        assert signature_def_map_json(model.signatures) == protos
    finally:
        model.close()


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
