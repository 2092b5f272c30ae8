"""SIGTERM is a graceful stop: in-flight requests finish, new ones are refused, exit code 0."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc


def test_sigterm_finishes_in_flight_requests_then_exits_0(
    model_server, fmnist_models, tmp_path: Path
):
    model_dir = tmp_path / "fmnist"
    model_dir.mkdir()
    (model_dir / "1").symlink_to(fmnist_models[3], target_is_directory=True)
    server = model_server("--model_name", "fmnist", "--model_base_path", str(model_dir))
    images = np.zeros((1, 28, 28), np.uint8)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "fmnist"
    request.model_spec.signature_name = "slow"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
    request.inputs["sleep_ms"].CopyFrom(tf.make_tensor_proto(np.int64(1000)))
    body = {"signature_name": "slow", "inputs": {"images": images.tolist(), "sleep_ms": 1000}}

    with grpc.insecure_channel(server.grpc_target) as channel, ThreadPoolExecutor(2) as pool:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        with pytest.raises(grpc.RpcError) as off:  # not enabled: not there, as in TF Serving
            health.Check(health_pb2.HealthCheckRequest(), timeout=30)
        assert off.value.code() == grpc.StatusCode.UNIMPLEMENTED
        slow_grpc = stub.Predict.future(request, timeout=60)
        slow_rest = pool.submit(
            requests.post, f"{server.rest_url}/v1/models/fmnist:predict", json=body, timeout=60
        )
        time.sleep(0.5)
        assert not slow_grpc.done() and not slow_rest.done()  # both in flight
        server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while "shutting down" not in server.log():
            assert time.monotonic() < deadline, server.log()[-2000:]
            time.sleep(0.05)
        while True:  # the listeners close at once (a request just before may still be served)
            try:
                requests.get(f"{server.rest_url}/v1/models/fmnist", timeout=5)
            except requests.ConnectionError:
                break
            assert time.monotonic() < deadline, "the REST listener stayed open"
            time.sleep(0.05)
        assert slow_grpc.result().outputs["class_ids"].int64_val == [3]
        answer = slow_rest.result()
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"]["class_ids"] == [3]
    assert server.process.wait(30) == 0
    assert "unloaded" in server.log()


def test_health_turns_not_serving_when_shutdown_starts(model_server, fmnist_models, tmp_path: Path):
    """A load balancer watching the standard health service sees NOT_SERVING at SIGTERM."""
    model_dir = tmp_path / "fmnist"
    model_dir.mkdir()
    (model_dir / "1").symlink_to(fmnist_models[3], target_is_directory=True)
    server = model_server(
        *("--model_name", "fmnist", "--model_base_path", str(model_dir)),
        "--enable_grpc_healthcheck_service",
    )
    Status = health_pb2.HealthCheckResponse
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        watch = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=60)
        assert next(watch).status == Status.SERVING
        server.process.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        statuses = [update.status for update in watch]  # the server ends the stream: OK
        assert statuses == [Status.NOT_SERVING], statuses
    assert server.process.wait(30) == 0
    assert time.monotonic() - stopping < 10, "an open Watch stream held up the shutdown"
