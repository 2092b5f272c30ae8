"""Our exported signature (uint8 images -> float32 probabilities, int64 class_ids) over both APIs,
and publishing a new version while requests, slow ones included, are in flight."""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
import threading
import time
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

from fmnist.serving.client import GrpcClient, RestClient, ServingError

State = get_model_status_pb2.ModelVersionStatus
IMAGES = np.random.default_rng(0).integers(0, 256, size=(4, 28, 28), dtype=np.uint8)


@pytest.fixture(scope="module")
def server(fmnist_models, session_model_server, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("fmnist") / "fmnist"
    model_dir.mkdir()
    (model_dir / "1").symlink_to(fmnist_models[3], target_is_directory=True)
    return session_model_server(
        *("--model_name", "fmnist", "--model_base_path", str(model_dir)),
        *("--rest_api_timeout_in_ms", "1000"),
    )


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.grpc_target) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def in_process(fmnist_models):
    """The reference: the same SavedModel's signature called in this process."""
    signature = tf.saved_model.load(str(fmnist_models[3])).signatures["serving_default"]
    return {k: v.numpy() for k, v in signature(images=tf.constant(IMAGES)).items()}


def assert_switched_once(answers: list[int], old: int, new: int) -> None:
    """A client's answers moved from `old` to `new` once, and never back."""
    switch = answers.index(new)
    assert switch > 0 and set(answers[:switch]) == {old} and set(answers[switch:]) == {new}


def images_request(images: np.ndarray, signature: str = "", model: str = "fmnist"):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
    return request


def test_grpc_round_trips_uint8_in_and_float32_int64_out(stub, in_process):
    response = stub.Predict(images_request(IMAGES), timeout=30)
    probabilities = response.outputs["probabilities"]
    class_ids = response.outputs["class_ids"]
    assert probabilities.dtype == tf.float32.as_datatype_enum and len(probabilities.float_val) == 40
    assert class_ids.dtype == tf.int64.as_datatype_enum and list(class_ids.int64_val) == [3] * 4
    np.testing.assert_array_equal(tf.make_ndarray(probabilities), in_process["probabilities"])
    np.testing.assert_array_equal(tf.make_ndarray(class_ids), in_process["class_ids"])


def test_grpc_accepts_uint8_as_typed_int_val(stub, in_process):
    request = images_request(IMAGES[:1])
    tensor = request.inputs["images"]
    tensor.ClearField("tensor_content")
    tensor.int_val.extend(IMAGES[:1].ravel().tolist())
    response = stub.Predict(request, timeout=30)
    probabilities = tf.make_ndarray(response.outputs["probabilities"])
    np.testing.assert_array_equal(probabilities, in_process["probabilities"][:1])


def test_rest_row_and_columnar_formats(server, in_process):
    url = f"{server.rest_url}/v1/models/fmnist:predict"
    row = requests.post(url, json={"instances": IMAGES[:2].tolist()})
    assert row.status_code == 200, row.text
    predictions = row.json()["predictions"]
    assert [p["class_ids"] for p in predictions] == [3, 3]
    np.testing.assert_array_equal(
        np.array([p["probabilities"] for p in predictions], np.float32),
        in_process["probabilities"][:2],  # float32 printed shortest still parses back exactly
    )
    columnar = requests.post(url, json={"inputs": {"images": IMAGES.tolist()}})
    outputs = columnar.json()["outputs"]
    assert outputs["class_ids"] == [3, 3, 3, 3]
    np.testing.assert_array_equal(
        np.array(outputs["probabilities"], np.float32), in_process["probabilities"]
    )


@pytest.mark.parametrize(
    ("images", "message"),
    [
        ([[[256] * 28] * 28], "out of range for DT_UINT8"),
        ([[[-1] * 28] * 28], "out of range for DT_UINT8"),
        ([[[0.5] * 28] * 28], "not of expected type: uint8"),
        ([[[0] * 28] * 27], "expected: [?,28,28], actual: [1,27,28]"),  # the signature
    ],
)
def test_rest_rejects_bad_pixels(server, images, message):
    response = requests.post(
        f"{server.rest_url}/v1/models/fmnist:predict", json={"instances": images}
    )
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_strings_round_trip_and_bytes_outputs_come_back_as_b64(server, stub):
    blobs = [b"\x00\xff binary", "text é".encode()]
    body = {
        "signature_name": "echo",
        "instances": [{"b64": base64.b64encode(b).decode()} for b in blobs],
    }
    response = requests.post(f"{server.rest_url}/v1/models/fmnist:predict", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "predictions": [
            {"echo_bytes": {"b64": base64.b64encode(b).decode()}, "length": len(b)} for b in blobs
        ]
    }
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "fmnist"
    request.model_spec.signature_name = "echo"
    request.inputs["blobs"].CopyFrom(tf.make_tensor_proto(blobs))
    answer = stub.Predict(request, timeout=30)
    assert list(answer.outputs["echo_bytes"].string_val) == blobs
    assert list(answer.outputs["length"].int_val) == [len(b) for b in blobs]


def test_metadata_declares_our_signature(server):
    metadata = requests.get(f"{server.rest_url}/v1/models/fmnist/metadata").json()
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    images = signature["inputs"]["images"]
    assert images["dtype"] == "DT_UINT8"
    assert [d["size"] for d in images["tensor_shape"]["dim"]] == ["-1", "28", "28"]
    assert signature["outputs"]["class_ids"]["dtype"] == "DT_INT64"
    assert signature["outputs"]["probabilities"]["dtype"] == "DT_FLOAT"


def test_rest_timeout_is_504_and_the_server_carries_on(server):
    url = f"{server.rest_url}/v1/models/fmnist:predict"
    body = {"signature_name": "slow", "inputs": {"images": IMAGES[:1].tolist(), "sleep_ms": 1500}}
    response = requests.post(url, json=body, timeout=30)
    assert response.status_code == 504
    assert "timed out after 1000 ms" in response.json()["error"]
    assert requests.post(url, json={"instances": IMAGES[:1].tolist()}, timeout=30).ok


def slow_request(sleep_ms: int) -> predict_pb2.PredictRequest:
    request = images_request(IMAGES[:1], signature="slow")
    request.inputs["sleep_ms"].CopyFrom(tf.make_tensor_proto(np.int64(sleep_ms)))
    return request


def test_publishing_drains_in_flight_requests_on_the_old_version(
    model_server, fmnist_models, tmp_path: Path, publish
):
    """A slow request holds version 1 while version 2 is published: version 2 takes the
    traffic at once, version 1 stays UNLOADING until the slow request completes, then ends."""
    model_dir = tmp_path / "fmnist"
    model_dir.mkdir()
    publish(fmnist_models[3], model_dir, 1)
    server = model_server(
        *("--model_name", "fmnist", "--model_base_path", str(model_dir)),
        *("--file_system_poll_wait_seconds", "0.2"),
    )
    failures: list[str] = []
    class_ids: list[list[int]] = [[] for _ in range(3)]
    stop = threading.Event()
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        status = model_service_pb2_grpc.ModelServiceStub(channel)

        def version_states() -> dict[int, int]:
            request = get_model_status_pb2.GetModelStatusRequest()
            request.model_spec.name = "fmnist"
            answer = status.GetModelStatus(request, timeout=30)
            return {s.version: s.state for s in answer.model_version_status}

        def traffic(seen: list[int]) -> None:
            for _ in range(5000):
                if stop.is_set():
                    return
                try:
                    answer = stub.Predict(images_request(IMAGES[:2]), timeout=30)
                    seen.append(answer.outputs["class_ids"].int64_val[0])
                except grpc.RpcError as err:
                    failures.append(f"{err.code()}: {err.details()}")

        workers = [threading.Thread(target=traffic, args=(seen,)) for seen in class_ids]
        for worker in workers:
            worker.start()
        slow = stub.Predict.future(slow_request(2500), timeout=60)
        time.sleep(0.5)  # the slow request is now running on version 1
        publish(fmnist_models[7], model_dir, 2)
        deadline = time.monotonic() + 30
        while version_states() != {2: State.AVAILABLE, 1: State.UNLOADING}:
            assert time.monotonic() < deadline, version_states()
            time.sleep(0.05)
        assert not slow.done()
        answer = slow.result()
        assert answer.model_spec.version.value == 1
        assert answer.outputs["class_ids"].int64_val[0] == 3
        deadline = time.monotonic() + 10
        while version_states() != {2: State.AVAILABLE, 1: State.END}:
            assert time.monotonic() < deadline, version_states()
            time.sleep(0.05)
        stop.set()
        for worker in workers:
            worker.join(60)
    assert failures == []
    for seen in class_ids:
        assert_switched_once(seen, 3, 7)


def test_fmnist_export_into_the_watched_base_path_under_load(
    model_server, exported_bundle: Path, perturbed_run: Path, data_dir: Path, tmp_path: Path
):
    """Users publish with `fmnist export` into the base path the server watches, then delete
    the old version's directory. Under bounded concurrent load (gRPC and REST, unpinned and
    pinned by label), the new version takes over without a failed unpinned request. The label
    `stable` names version 1: its requests are answered by version 1 while it is served and
    fail NOT_FOUND once its directory is gone (never answered by another version)."""
    base = tmp_path / "models"
    shutil.copytree(exported_bundle, base / "fashion_mnist" / "1")
    config = tmp_path / "serve.config"  # as `fmnist export` writes it, with the label fixed
    config.write_text(
        f'model_config_list {{ config {{ name: "fashion_mnist" base_path: '
        f'"{base / "fashion_mnist"}" model_platform: "tensorflow" '
        "model_version_policy { latest { num_versions: 2 } } "
        'version_labels { key: "stable" value: 1 } } }'
    )
    server = model_server(
        *("--model_config_file", str(config)),
        *("--file_system_poll_wait_seconds", "0.2"),
    )
    clients = [
        ("gRPC", None),
        ("gRPC", None),
        ("REST", None),
        ("gRPC", "stable"),
        ("REST", "stable"),
    ]
    failures: list[list[ServingError]] = [[] for _ in clients]
    versions: list[list[int]] = [[] for _ in clients]
    stop = threading.Event()

    def traffic(api: str, label: str | None, seen: list[int], failed: list) -> None:
        if api == "gRPC":
            client = GrpcClient(server.grpc_target, "fashion_mnist", timeout=30)
        else:
            client = RestClient(server.rest_url, "fashion_mnist", timeout=30)
        with client:
            for _ in range(20_000):  # bounded; stopped long before
                if stop.is_set():
                    return
                try:
                    seen.append(client.predict(IMAGES, label=label).model_version)
                except ServingError as err:
                    failed.append(err)

    workers = [
        threading.Thread(target=traffic, args=(*client, seen, failed))
        for client, seen, failed in zip(clients, versions, failures, strict=True)
    ]
    unpinned = [i for i, (_, label) in enumerate(clients) if label is None]
    for worker in workers:
        worker.start()
    try:
        export = subprocess.run(
            [
                *(sys.executable, "-m", "fmnist.cli", "export", str(perturbed_run)),
                *("--base-path", str(base), "--data-dir", str(data_dir)),
                *("--max-accuracy-drop", "5", "--min-agreement", "0.9"),
                *("--max-class-recall-drop", "100"),
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert export.returncode == 0, export.stderr[-2000:]
        assert (base / "fashion_mnist" / "2" / "manifest.json").is_file()
        deadline = time.monotonic() + 60
        while not all(versions[i] and versions[i][-1] == 2 for i in unpinned):
            assert time.monotonic() < deadline, "the exported version 2 never took the traffic"
            time.sleep(0.1)
        shutil.rmtree(base / "fashion_mnist" / "1")
        with GrpcClient(server.grpc_target, "fashion_mnist") as watcher:
            while {s["version"]: s["state"] for s in watcher.status()}.get(1) != "END":
                assert time.monotonic() < deadline, "version 1 was never unloaded"
                time.sleep(0.1)
        counts = [len(seen) for seen in versions]
        while not all(len(versions[i]) >= counts[i] + 20 for i in unpinned):  # traffic after
            assert time.monotonic() < deadline, "too little traffic after the deletion"
            time.sleep(0.1)
    finally:
        stop.set()
        for worker in workers:
            worker.join(60)
    for i in unpinned:
        assert failures[i] == []
        assert_switched_once(versions[i], 1, 2)
    for i in set(range(len(clients))) - set(unpinned):
        assert versions[i] and set(versions[i]) == {1}
        assert {err.code for err in failures[i]} <= {"NOT_FOUND"}
    print(
        "rollout:",
        ", ".join(
            f"{api} {label or 'unpinned'}: {len(seen)} answered, {len(failed)} failed"
            for (api, label), seen, failed in zip(clients, versions, failures, strict=True)
        ),
    )
