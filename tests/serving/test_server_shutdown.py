"""SIGTERM is a graceful stop: in-flight requests finish, new ones are refused, exit code 0."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import requests
import tensorflow as tf
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
