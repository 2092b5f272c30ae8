"""`--enable_profiler` (default true, as in TF Serving): TensorFlow's own profiler client,
pointed at the gRPC address while REST requests flow, writes a trace to its logdir."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import grpc
import pytest
import requests
import tensorflow as tf

from fmnist.serving.wire import messages as pb

SAVED_MODEL = "saved_model_half_plus_two_cpu"
TFLITE = "saved_model_half_plus_two_tflite/00000123"


def _trace_while_serving(server, model: str, logdir: Path) -> bytes:
    """A 1.5 s capture with REST predicts running; the trace file's bytes."""
    stop, answered = threading.Event(), []

    def load() -> None:
        with requests.Session() as session:
            url = f"{server.rest_url}/v1/models/{model}:predict"
            while not stop.is_set():
                answered.append(session.post(url, json={"instances": [1.0]}).status_code)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        tf.profiler.experimental.client.trace(f"grpc://{server.grpc_target}", str(logdir), 1500)
    finally:
        stop.set()
        worker.join()
    assert answered and set(answered) == {200}
    (trace,) = logdir.glob("plugins/profile/*/*.xplane.pb")
    return trace.read_bytes()


def test_a_capture_of_a_saved_model_shows_requests_and_tensorflow_ops(
    model_server, serving_fixtures: Path, tmp_path: Path
):
    server = model_server(
        "--model_name", "hp", "--model_base_path", str(serving_fixtures / SAVED_MODEL)
    )
    trace = _trace_while_serving(server, "hp", tmp_path / "logdir")
    assert b"rest.predict" in trace  # the server's span around each request
    assert b"Mul" in trace and b"Add" in trace  # y = 0.5 * x + 2, op by op


def test_a_capture_of_a_tflite_model_shows_its_requests(
    model_server, serving_fixtures: Path, tmp_path: Path
):
    base = tmp_path / "hp"
    shutil.copytree(serving_fixtures / TFLITE, base / "123")
    server = model_server(
        "--prefer_tflite_model", "--model_name", "hp", "--model_base_path", str(base)
    )
    assert b"rest.predict" in _trace_while_serving(server, "hp", tmp_path / "logdir")


def test_profiler_off_answers_unimplemented(model_server, serving_fixtures: Path):
    server = model_server(
        "--enable_profiler=false",
        *("--model_name", "hp", "--model_base_path", str(serving_fixtures / SAVED_MODEL)),
    )
    with grpc.insecure_channel(server.grpc_target) as channel:
        profile = channel.unary_unary(
            f"/{pb.PROFILER_SERVICE}/Profile",
            request_serializer=pb.ProfileRequest.SerializeToString,
            response_deserializer=pb.ProfileResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as caught:
            profile(pb.ProfileRequest(duration_ms=10), timeout=30)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_a_request_without_a_repository_is_invalid(model_server, serving_fixtures: Path):
    server = model_server(
        "--model_name", "hp", "--model_base_path", str(serving_fixtures / SAVED_MODEL)
    )
    with grpc.insecure_channel(server.grpc_target) as channel:
        profile = channel.unary_unary(
            f"/{pb.PROFILER_SERVICE}/Profile",
            request_serializer=pb.ProfileRequest.SerializeToString,
            response_deserializer=pb.ProfileResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as caught:
            profile(pb.ProfileRequest(duration_ms=10), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
