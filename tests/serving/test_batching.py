"""--enable_batching against a real `fmnist serve` serving TF Serving's half_plus_two.

The server batches with max_batch_size 8, one batch thread, one enqueued batch and a long
batch timeout: a batch then runs exactly when its 8th row arrives, so "these requests
shared one model call" is deterministic. Model calls are counted from outside through the
Prometheus metric fmnist_serving_batch_size (one observation per batched model call).
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

pytestmark = pytest.mark.integration

MAX_BATCH = 8
PARAMETERS = f"""
max_batch_size {{ value: {MAX_BATCH} }}
batch_timeout_micros {{ value: 20000000 }}
max_enqueued_batches {{ value: 1 }}
num_batch_threads {{ value: 1 }}
"""
RPC_TIMEOUT_S = 30  # every call is bounded; a queued call's deadline takes it off the queue


@pytest.fixture(scope="module")
def server(serving_fixtures: Path, session_model_server, tmp_path_factory):
    path = tmp_path_factory.mktemp("batching") / "batching.config"
    path.write_text(PARAMETERS)
    return session_model_server(
        *("--model_name", "hp", "--model_base_path"),
        str(serving_fixtures / "saved_model_half_plus_two_cpu"),
        *("--monitoring_config_file", str(serving_fixtures / "monitoring_config.txt")),
        "--enable_batching",
        *("--batching_parameters_file", str(path)),
        *("--grpc_max_threads", str(4 * MAX_BATCH)),  # every concurrent call gets a worker
    )


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.grpc_target) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def request(*xs: float) -> predict_pb2.PredictRequest:
    message = predict_pb2.PredictRequest()
    message.model_spec.name = "hp"
    message.inputs["x"].CopyFrom(tf.make_tensor_proto(np.float32(xs).reshape(-1, 1)))
    return message


def answer(response: predict_pb2.PredictResponse) -> list[float]:
    return tf.make_ndarray(response.outputs["y"]).ravel().tolist()


def model_calls(server) -> tuple[float, float]:
    """(batched model calls, rows they ran) from the Prometheus endpoint."""
    page = requests.get(f"{server.rest_url}/monitoring/prometheus/metrics", timeout=10).text

    def value(name: str) -> float:
        match = re.search(rf"^{name} (\S+)$", page, re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    return value("fmnist_serving_batch_size_count"), value("fmnist_serving_batch_size_sum")


def test_concurrent_requests_share_one_model_call(server, stub):
    calls, rows = model_calls(server)
    with ThreadPoolExecutor(MAX_BATCH) as pool:
        futures = [
            pool.submit(stub.Predict, request(float(i)), timeout=RPC_TIMEOUT_S)
            for i in range(MAX_BATCH)
        ]
        for future in futures:
            future.result()
    assert model_calls(server) == (calls + 1, rows + MAX_BATCH)


def test_each_caller_gets_its_own_answer(server, stub):
    sizes = [1, 2, 1, 3, 1]  # 8 rows: one batch
    inputs = [[10.0 * i + j for j in range(n)] for i, n in enumerate(sizes)]
    with ThreadPoolExecutor(len(sizes)) as pool:
        futures = [pool.submit(stub.Predict, request(*x), timeout=RPC_TIMEOUT_S) for x in inputs]
        answers = [answer(f.result()) for f in futures]
    assert answers == [[x / 2 + 2 for x in xs] for xs in inputs]


def test_full_queue_is_unavailable(server, stub):
    """One row waits in the open batch; a request that does not fit would need a second
    batch, and only one may be enqueued."""
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(stub.Predict, request(1.0), timeout=RPC_TIMEOUT_S)
        end, refused = time.monotonic() + RPC_TIMEOUT_S, None
        while refused is None:  # until the waiting row is queued (the server may be slow)
            assert time.monotonic() < end, "the server never refused a request"
            try:
                stub.Predict(request(*[0.0] * MAX_BATCH), timeout=RPC_TIMEOUT_S)
            except grpc.RpcError as err:
                refused = err
        stub.Predict(request(*[0.0] * (MAX_BATCH - 1)), timeout=RPC_TIMEOUT_S)  # fills it
        assert answer(waiting.result()) == [2.5]
    assert refused.code() == grpc.StatusCode.UNAVAILABLE
    assert refused.details() == (
        "The batch scheduling queue to which this task was submitted is full; "
        "currently 1 batches enqueued and max_enqueued_batches is 1"
    )


def test_request_larger_than_max_batch_size_is_invalid_argument(server, stub):
    with pytest.raises(grpc.RpcError) as refused:
        stub.Predict(request(*[1.0] * (MAX_BATCH + 1)), timeout=RPC_TIMEOUT_S)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == (
        f"Task size {MAX_BATCH + 1} is larger than maximum input batch size {MAX_BATCH}"
    )


def test_rest_too_large_request_is_http_400(server):
    body = {"instances": [[1.0]] * (MAX_BATCH + 1)}
    response = requests.post(f"{server.rest_url}/v1/models/hp:predict", json=body, timeout=30)
    assert response.status_code == 400
    assert response.json() == {
        "error": f"Task size {MAX_BATCH + 1} is larger than maximum input batch size {MAX_BATCH}"
    }
