"""gRPC calls whose request never arrives hold no worker thread and do not hold up SIGTERM.

A stalled call here is a real one on the wire: a stream-unary call on Predict's path whose
request iterator blocks, so the client sends the call's HEADERS and never its message, as a
client with a slow or stuck upload does. Everything goes over one channel (one HTTP/2
connection), so the server sees the stalled calls before the normal Predict sent after them.
"""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

pytestmark = pytest.mark.integration

PREDICT = "/tensorflow.serving.PredictionService/Predict"
THREADS = 4  # --grpc_max_threads: the model workers the stalled calls used to take


@contextmanager
def stalled_calls(channel: grpc.Channel, count: int) -> Iterator[list[grpc.Future]]:
    """`count` Predict calls that sent their headers but never their request message."""
    release = threading.Event()

    def never_sends():
        release.wait(60)
        return
        yield  # a generator that yields nothing

    call = channel.stream_unary(PREDICT)
    calls = [call.future(never_sends(), timeout=60) for _ in range(count)]
    try:
        yield calls
    finally:
        release.set()
        for pending in calls:
            pending.cancel()


def predict_request() -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.asarray([1.0], np.float32)))
    return request


@pytest.fixture
def server(model_server, serving_fixtures: Path):
    return model_server(
        *("--model_name", "half_plus_two"),
        *("--model_base_path", str(serving_fixtures / "saved_model_half_plus_two_cpu")),
        *("--grpc_max_threads", str(THREADS)),
    )


def test_stalled_calls_do_not_block_other_predicts(server):
    with (
        grpc.insecure_channel(server.grpc_target) as channel,
        stalled_calls(channel, 2 * THREADS) as stalled,
    ):
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        answer = stub.Predict(predict_request(), timeout=10)
        assert answer.outputs["y"].float_val == [2.5]
        assert not any(call.done() for call in stalled), "the stalled calls did not stay open"


def test_sigterm_does_not_wait_for_calls_that_never_sent_their_request(server):
    """The grace period is 30 s; calls still waiting for their request are answered
    UNAVAILABLE at once (their clients may retry elsewhere) and the server exits."""
    with (
        grpc.insecure_channel(server.grpc_target) as channel,
        stalled_calls(channel, 2 * THREADS) as stalled,
    ):
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        stub.Predict(predict_request(), timeout=10)  # served after the stalled calls arrived
        server.process.send_signal(signal.SIGTERM)
        try:
            code = server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail("SIGTERM waited for calls that never sent their request")
        assert code == 0
        for call in stalled:
            error = call.exception(timeout=10)
            assert isinstance(error, grpc.RpcError) and error.code() == grpc.StatusCode.UNAVAILABLE
            assert error.details() == "Server is shutting down"
