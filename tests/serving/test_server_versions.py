"""Version policies, labels and file-system polling: new versions load, old ones drain."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

TWO_VERSIONS = "saved_model_half_plus_two_2_versions"
State = get_model_status_pb2.ModelVersionStatus


def predict_request(model: str, version: int | None = None, label: str | None = None):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0], np.float32)))
    return request


def states(channel, model: str) -> dict[int, int]:
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model
    response = stub.GetModelStatus(request, timeout=30)
    return {s.version: s.state for s in response.model_version_status}


def wait_for(condition: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


POLICIES = """
model_config_list {{
  config {{ name: "latest" base_path: "{path}" }}
  config {{ name: "latest2" base_path: "{path}"
           model_version_policy {{ latest {{ num_versions: 2 }} }} }}
  config {{ name: "all" base_path: "{path}" model_version_policy {{ all {{}} }}
           version_labels {{ key: "stable" value: 123 }}
           version_labels {{ key: "canary" value: 124 }} }}
  config {{ name: "specific" base_path: "{path}"
           model_version_policy {{ specific {{ versions: 123 }} }} }}
  config {{ name: "tf2" base_path: "{tf2_path}" }}
}}
"""


def test_version_policies_labels_and_method_check(
    model_server, serving_fixtures: Path, tmp_path: Path
):
    config = tmp_path / "models.config"
    tf2_path = serving_fixtures / "saved_model_half_plus_two_tf2_cpu"
    config.write_text(POLICIES.format(path=serving_fixtures / TWO_VERSIONS, tf2_path=tf2_path))
    server = model_server(
        *("--model_config_file", str(config)), "--enable_signature_method_name_check"
    )
    available = State.AVAILABLE
    with grpc.insecure_channel(server.grpc_target) as channel:
        assert states(channel, "latest") == {124: available}
        assert states(channel, "latest2") == {124: available, 123: available}
        assert states(channel, "all") == {124: available, 123: available}
        assert states(channel, "specific") == {123: available}
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for model, version, label, served in [
            ("latest", None, None, 124),
            ("latest2", 123, None, 123),
            ("all", None, "stable", 123),
            ("all", None, "canary", 124),
            ("specific", None, None, 123),
        ]:
            response = stub.Predict(predict_request(model, version, label), timeout=30)
            assert response.model_spec.version.value == served, (model, version, label)
        with pytest.raises(grpc.RpcError) as unloaded:
            stub.Predict(predict_request("latest", 123), timeout=30)
        assert unloaded.value.code() == grpc.StatusCode.NOT_FOUND

    metadata = requests.get(f"{server.rest_url}/v1/models/all/labels/stable/metadata").json()
    expected = json.loads((serving_fixtures / f"{TWO_VERSIONS}_metadata.json").read_text())
    expected["model_spec"]["name"] = "all"
    assert metadata == expected
    # With --enable_signature_method_name_check, Classify needs a classify-method signature.
    body = {"signature_name": "classify_x_to_y", "examples": [{"x": 20.0}]}
    classify = requests.post(f"{server.rest_url}/v1/models/all:classify", json=body)
    assert classify.json() == {"results": [[["", 12.0]]]}
    refused = requests.post(f"{server.rest_url}/v1/models/tf2:classify", json=body)
    assert refused.status_code == 400
    assert "Expected classification signature method_name to be" in refused.json()["error"]
    canary = requests.post(
        f"{server.rest_url}/v1/models/all/labels/canary:predict", json={"instances": [2.0]}
    )
    assert canary.json() == {"predictions": [3.0]}


def test_a_label_on_an_unavailable_version_stops_startup(serving_fixtures: Path, tmp_path: Path):
    config = tmp_path / "models.config"
    config.write_text(
        f'model_config_list {{ config {{ name: "m" base_path: "{serving_fixtures / TWO_VERSIONS}" '
        'version_labels { key: "stable" value: 7 } } }'
    )
    result = subprocess.run(
        [
            *(sys.executable, "-m", "fmnist.cli", "serve", "--port", "0", "--rest_api_port", "0"),
            *("--model_config_file", str(config)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "fmnist serve: error: label 'stable' of model m names version 7" in result.stderr
    assert "Traceback" not in result.stderr


class Load:
    """Bounded background traffic (gRPC and REST) that records every answer and failure."""

    def __init__(self, server, model: str, threads_per_api: int = 2, max_requests: int = 20_000):
        self.server, self.model = server, model
        self.answers: list[list[tuple[float, int | None]]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._budget = max_requests
        self._threads = [
            threading.Thread(target=target, args=(i,), daemon=True)
            for i, target in enumerate(
                [self._grpc] * threads_per_api + [self._rest] * threads_per_api
            )
        ]
        self.answers = [[] for _ in self._threads]

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _running(self) -> bool:
        self._budget -= 1
        return not self._stop.is_set() and self._budget > 0

    def _grpc(self, slot: int) -> None:
        with grpc.insecure_channel(self.server.grpc_target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            while self._running():
                try:
                    response = stub.Predict(predict_request(self.model), timeout=30)
                    value = response.outputs["y"].float_val[0]
                    self.answers[slot].append((value, response.model_spec.version.value))
                except grpc.RpcError as err:
                    self.failures.append(f"grpc {err.code()}: {err.details()}")

    def _rest(self, slot: int) -> None:
        url = f"{self.server.rest_url}/v1/models/{self.model}:predict"
        with requests.Session() as session:
            while self._running():
                try:
                    response = session.post(url, json={"instances": [1.0]}, timeout=30)
                    if response.status_code != 200:
                        self.failures.append(f"rest {response.status_code}: {response.text}")
                    else:
                        self.answers[slot].append((response.json()["predictions"][0], None))
                except requests.RequestException as err:
                    self.failures.append(f"rest {err}")

    def latest_values(self) -> set[float]:
        return {answers[-1][0] for answers in self.answers if answers}


def test_publishing_under_load_switches_versions_without_a_failed_request(
    model_server, serving_fixtures: Path, tmp_path: Path, publish
):
    """The server starts on an empty base path; half_plus_two arrives as version 1, then
    publishing half_plus_three as version 2 (atomic rename) switches every client from 2.5
    to 3.5; a broken version 3 and a half-written hidden directory change nothing; version
    1 is unloaded."""
    model_dir = tmp_path / "models" / "hp"
    model_dir.mkdir(parents=True)
    server = model_server(
        *("--model_name", "hp", "--model_base_path", str(model_dir)),
        *("--file_system_poll_wait_seconds", "0.2"),
    )
    url = f"{server.rest_url}/v1/models/hp:predict"
    assert requests.post(url, json={"instances": [1.0]}).status_code == 404
    publish(serving_fixtures / "saved_model_half_plus_two_cpu" / "00000123", model_dir, 1)
    wait_for(lambda: requests.post(url, json={"instances": [1.0]}).ok, what="version 1")
    with Load(server, "hp") as load, grpc.insecure_channel(server.grpc_target) as channel:
        wait_for(lambda: load.latest_values() == {2.5} and all(load.answers), what="v1 traffic")
        (model_dir / ".tmp-half-written").mkdir()
        (model_dir / ".tmp-half-written" / "saved_model.pb").write_bytes(b"partial")
        publish(serving_fixtures / "saved_model_half_plus_three" / "00000123", model_dir, 2)
        wait_for(lambda: load.latest_values() == {3.5}, what="every client on v2")
        wait_for(lambda: states(channel, "hp") == {2: State.AVAILABLE, 1: State.END}, what="v1 end")
        broken = model_dir / ".tmp-broken"
        broken.mkdir()
        (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
        broken.rename(model_dir / "3")
        wait_for(lambda: states(channel, "hp").get(3) == State.END, what="v3 load failure")
        counts = [len(a) for a in load.answers]
        wait_for(lambda: all(len(a) > c + 5 for a, c in zip(load.answers, counts, strict=True)))
    assert load.failures == []
    for answers in load.answers:
        values = [value for value, _ in answers]
        switch = values.index(3.5)
        assert set(values[:switch]) == {2.5} and set(values[switch:]) == {3.5}  # never back
    grpc_versions = {version for answers in load.answers for _, version in answers if version}
    assert grpc_versions == {1, 2}
    status = requests.get(f"{server.rest_url}/v1/models/hp").json()["model_version_status"]
    assert [(s["version"], s["state"]) for s in status] == [
        ("3", "END"),
        ("2", "AVAILABLE"),
        ("1", "END"),
    ]
    assert status[0]["status"]["error_code"] != "OK" and status[0]["status"]["error_message"]
    shutil.rmtree(model_dir / ".tmp-half-written")
