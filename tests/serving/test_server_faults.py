"""Faults a TF Serving server survives, against a real `fmnist serve` (issue 15, "Server").

A base path that disappears, version names beyond int64, REST bodies that outlive their
timeout, hostile JSON and malformed HTTP: the server keeps answering, with JSON errors.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
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

pytestmark = pytest.mark.integration

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE


def wait_for(condition: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def model_dir(serving_fixtures: Path, tmp_path: Path) -> Path:
    """A base path `<tmp>/models/hp2` holding half_plus_two as version 1."""
    base = tmp_path / "models" / "hp2"
    base.mkdir(parents=True)
    shutil.copytree(serving_fixtures / "saved_model_half_plus_two_cpu" / "00000123", base / "1")
    return base


def serve(model_server, model_dir: Path, *flags: str):
    return model_server(
        *("--model_name", "hp2", "--model_base_path", str(model_dir)),
        *("--file_system_poll_wait_seconds", "0.2"),
        *flags,
    )


def grpc_predict(server, x: float = 1.0) -> float:
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "hp2"
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([x], np.float32)))
        response = stub.Predict(request, timeout=10)
    return float(tf.make_ndarray(response.outputs["y"])[0])


def grpc_status(server) -> dict[int, int]:
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "hp2"
        response = stub.GetModelStatus(request, timeout=10)
    return {s.version: s.state for s in response.model_version_status}


def rest_predict(server, body: bytes | str = '{"instances": [1.0]}', timeout: float = 10):
    return requests.post(f"{server.rest_url}/v1/models/hp2:predict", data=body, timeout=timeout)


# --- base path and version names -------------------------------------------------------------


def test_a_deleted_base_path_keeps_the_loaded_version_serving(model_server, model_dir: Path):
    server = serve(model_server, model_dir)
    moved = model_dir.with_name("hp2-away")
    model_dir.rename(moved)  # gone, as `rm -r` would leave it, but restorable
    wait_for(lambda: "could not find base path" in server.log(), what="the missing-path log")
    failures = requests_sent = 0
    until = time.monotonic() + 2  # ten polls with the base path missing
    while time.monotonic() < until:
        requests_sent += 2
        failures += rest_predict(server).status_code != 200
        try:
            grpc_predict(server)
        except grpc.RpcError:
            failures += 1
    assert requests_sent > 0 and failures == 0
    assert grpc_status(server) == {1: AVAILABLE}
    assert server.log().count("could not find base path") == 1  # once per state change
    moved.rename(model_dir)
    wait_for(lambda: "readable again" in server.log(), what="recovery")


def test_an_emptied_base_path_unloads_its_versions_as_tf_serving_does(
    model_server, model_dir: Path
):
    server = serve(model_server, model_dir)
    shutil.rmtree(model_dir / "1")
    wait_for(lambda: rest_predict(server).status_code == 404, what="version 1 to unload")
    assert "no versions found under base path" in server.log()


def test_version_names_beyond_int64_are_ignored(model_server, model_dir: Path, publish):
    server = serve(model_server, model_dir)
    publish(model_dir / "1", model_dir, 99999999999999999999)
    publish(model_dir / "1", model_dir, 2**63)  # int64 max + 1
    publish(model_dir / "1", model_dir, 2)  # its arrival proves a later poll ran
    wait_for(lambda: grpc_status(server).get(2) == AVAILABLE, what="version 2")
    assert set(grpc_status(server)) == {1, 2}
    assert grpc_predict(server) == 2.5
    status = requests.get(f"{server.rest_url}/v1/models/hp2", timeout=10)
    metadata = requests.get(f"{server.rest_url}/v1/models/hp2/metadata", timeout=10)
    assert status.status_code == 200, status.text
    assert metadata.json()["model_spec"]["version"] == "2"
    assert rest_predict(server).json() == {"predictions": [2.5]}


# --- REST: bodies that outlive their timeout ----------------------------------------------------


def big_body(mib: int) -> bytes:
    rows = (mib << 20) // 6
    return b'{"instances": [' + b"[0.5]," * (rows - 1) + b"[0.5]]}"


def test_timed_out_requests_stop_and_free_the_server(model_server, model_dir: Path):
    """Two 20 MiB bodies with a 1 s timeout and two REST threads: both get a JSON 504, and
    their work stops, so a tiny request right after them is answered."""
    server = serve(
        model_server,
        model_dir,
        *("--rest_api_timeout_in_ms", "1000", "--rest_api_num_threads", "2"),
    )
    body, answers = big_body(20), []
    senders = [
        threading.Thread(target=lambda: answers.append(rest_predict(server, body, timeout=60)))
        for _ in range(2)
    ]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    assert [a.status_code for a in answers] == [504, 504]
    assert all("timed out" in a.json()["error"] for a in answers)
    tiny = rest_predict(server, timeout=10)
    assert tiny.status_code == 200, tiny.text
    assert tiny.json() == {"predictions": [2.5]}
    assert server.stop(timeout=30) == 0  # SIGTERM: nothing left running to wait for


# --- REST: hostile JSON --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hp2(session_model_server, serving_fixtures: Path):
    """half_plus_two (x: float [-1, 1]) shared by the JSON and HTTP tests below."""
    return session_model_server(
        *("--model_name", "hp2"),
        *("--model_base_path", str(serving_fixtures / "saved_model_half_plus_two_cpu")),
    )


def nested(levels: int, separator: str = "") -> str:
    return ("[" + separator) * levels + "1.0" + (separator + "]") * levels


def instances(text: str) -> str:
    return '{"instances": ' + text + "}"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (instances(nested(65)), "over the limit of 32"),
        (instances(nested(65, "  ")), "over the limit of 32"),  # a span-sized one
        (instances(nested(5000)), "nesting too deep"),
        (instances("[" + ",".join(["9" * 4300] * 9) + "]"), "Number too big"),
        (instances("[" + ",".join(["9" * 400] * 9) + "]"), "Number too big"),
        ('{"instances": [1e400]}', "Number too big"),
        ('{"instances": [true]}', "Type: True is not of expected type: float"),
        ('{"instances": [1.0, false]}', "Type: False is not of expected type: float"),
        ('{"inputs": [[1.0], [true]]}', "Type: True is not of expected type: float"),
    ],
    ids=[
        "65-deep",
        "65-deep-span",
        "5000-deep",
        "4300-digits",
        "400-digits",
        "1e400",
        "true",
        "false-after-number",
        "true-columnar",
    ],
)
def test_hostile_json_is_an_invalid_argument(hp2, body: str, error: str):
    response = rest_predict(hp2, body)
    assert response.status_code == 400, response.text
    assert error in response.json()["error"]


def test_a_large_numeric_body_is_decoded_exactly(hp2):
    """The numeric fast path (text straight to numpy) gives the values the exact path gives."""
    values = [0.5, -1e-3, 2e5, 0, -0.0, 123456.75, 1, 7]
    rows = [[values[i % len(values)]] for i in range(4096)]
    response = rest_predict(hp2, json.dumps({"instances": rows}))
    assert response.status_code == 200, response.text
    expected = [[np.float32(np.float32(r[0]) * 0.5 + 2)] for r in rows]
    assert np.array_equal(np.array(response.json()["predictions"], np.float32), expected)


@pytest.mark.parametrize(
    ("rows", "error"),
    [
        ([[0.5]] * 200 + [[0.5, 0.5]], "Encountered list at unexpected size: 2"),
        ([[0.5]] * 200 + [0.5], "found at incorrect level"),
        ([[0.5]] * 200 + [[[0.5]]], "Encountered list at unexpected level"),
    ],
    ids=["ragged", "scalar-among-lists", "too-deep-row"],
)
def test_a_ragged_large_body_gets_tf_servings_error(hp2, rows, error: str):
    response = rest_predict(hp2, json.dumps({"instances": rows}))
    assert response.status_code == 400, response.text
    assert error in response.json()["error"]


# --- HTTP: malformed requests get JSON answers ---------------------------------------------------


def raw_exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the answer to EOF; (status, headers, body). Fails on no answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        # The server may answer early and stop reading; its answer is still there.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        chunks = []
        try:
            while data := sock.recv(65536):
                chunks.append(data)
        except ConnectionResetError:
            pass
    answer = b"".join(chunks)
    assert answer, "connection closed without a response"
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, body


LONG = 70_000  # over the 64 KiB limits
HUGE = 2 << 20  # over the size Tornado reads a header block to


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /v1/models/hp2 HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without Host
        (b"\x00\x01\x02 / HTTP/1.1\r\n\r\n", 400),
        (b"GET /v1/models/hp2 HTTP/9.9\r\n\r\n", 400),
        (b"GET /v1/models/hp2 HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400),
        (b"GET /v1/models/hp2 HTTP/1.1\r\nBad Header\r\n\r\n", 400),
        (b"POST /v1/models/hp2:predict HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
        (b"GET /v1/models/" + b"a" * LONG + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /v1/models/hp2 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * LONG + b"\r\n\r\n", 431),
        (b"GET /v1/models/" + b"a" * HUGE + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET /v1/models/hp2 HTTP/1.1\r\nX-Big: " + b"a" * HUGE + b"\r\n\r\n", 431),
    ],
    ids=[
        "garbage",
        "no-host",
        "binary-method",
        "bad-version",
        "nul-in-header",
        "header-without-colon",
        "bad-content-length",
        "long-url",
        "long-header",
        "huge-url",
        "huge-header",
    ],
)
def test_malformed_http_gets_a_json_error(hp2, request_bytes: bytes, status: int):
    got, headers, body = raw_exchange(hp2.rest_port, request_bytes)
    assert got == status, body
    assert headers.get("Content-Type", "").startswith("application/json")
    assert isinstance(json.loads(body)["error"], str)
    assert rest_predict(hp2).status_code == 200  # and the server is still serving
