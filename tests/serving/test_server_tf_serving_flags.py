"""tensorflow_model_server's startup log lines, --grpc_socket_path and --grpc_channel_arguments,
against real `fmnist serve` processes serving TF Serving's half_plus_two."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

pytestmark = pytest.mark.integration


@pytest.fixture
def half_plus_two(serving_fixtures: Path) -> list[str]:
    base = serving_fixtures / "saved_model_half_plus_two_cpu"
    return ["--model_name", "half_plus_two", "--model_base_path", str(base)]


def predict(channel: grpc.Channel, values: list[float]) -> list[float]:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.asarray(values, np.float32)))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    return list(stub.Predict(request, timeout=30).outputs["y"].float_val)


def test_startup_lines_are_tf_servings_with_the_bound_addresses(model_server, half_plus_two):
    server = model_server(*half_plus_two)
    log = server.log()
    assert re.search(
        rf"\] Running gRPC ModelServer at 127\.0\.0\.1:{server.grpc_port} \.\.\.$", log, re.M
    )
    assert re.search(
        rf"\] Exporting HTTP/REST API at:127\.0\.0\.1:{server.rest_port} \.\.\.$", log, re.M
    )
    # gRPC is announced before REST, as TF Serving starts them in that order
    assert log.index("Running gRPC ModelServer") < log.index("Exporting HTTP/REST API")


def test_no_rest_line_when_rest_is_disabled(model_server, half_plus_two):
    server = model_server(*half_plus_two, "--rest_api_port", "0")
    assert "Running gRPC ModelServer at" in server.log()
    assert "Exporting HTTP/REST API" not in server.log()


def test_grpc_is_also_served_on_the_unix_socket(model_server, half_plus_two):
    with tempfile.TemporaryDirectory(prefix="fmnist-") as short:  # unix paths max ~107 bytes
        socket_path = Path(short) / "tfs.sock"
        server = model_server(*half_plus_two, "--grpc_socket_path", str(socket_path))
        assert socket_path.is_socket()
        with grpc.insecure_channel(f"unix:{socket_path}") as channel:
            assert predict(channel, [1.0, 2.0, 5.0]) == [2.5, 3.0, 4.5]
        with grpc.insecure_channel(server.grpc_target) as channel:  # TCP still served
            assert predict(channel, [0.0]) == [2.0]


def test_channel_arguments_reach_the_grpc_server(model_server, half_plus_two):
    limit = 2000
    server = model_server(
        *half_plus_two,
        "--grpc_channel_arguments",
        f"grpc.max_receive_message_length={limit},grpc.primary_user_agent=fmnist",
    )
    with grpc.insecure_channel(server.grpc_target) as channel:
        assert predict(channel, [1.0]) == [2.5]
        with pytest.raises(grpc.RpcError) as caught:
            predict(channel, [1.0] * 1000)  # ~4 KB > the 2000-byte limit set by the flag
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def _threads_after_a_predict(model_server, half_plus_two, intra: int, inter: int) -> int:
    server = model_server(
        *half_plus_two,
        *("--tensorflow_intra_op_parallelism", str(intra)),
        *("--tensorflow_inter_op_parallelism", str(inter)),
    )
    with grpc.insecure_channel(server.grpc_target) as channel:
        assert predict(channel, [1.0]) == [2.5]  # runs on the caller's thread when inter is 1
    return len(list(Path(f"/proc/{server.process.pid}/task").iterdir()))


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
def test_tensorflow_parallelism_flags_size_the_sessions_thread_pools(model_server, half_plus_two):
    small = _threads_after_a_predict(model_server, half_plus_two, intra=1, inter=1)
    large = _threads_after_a_predict(model_server, half_plus_two, intra=7, inter=5)
    assert large - small == (7 - 1) + (5 - 1)


def test_bad_channel_arguments_are_a_one_line_error_naming_the_flag(serving_fixtures):
    base = serving_fixtures / "saved_model_half_plus_two_cpu"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "fmnist.cli", "serve", "--model_base_path", str(base)),
            *("--port", "0", "--rest_api_port", "0", "--grpc_channel_arguments", "grpc.x=1,oops"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert "--grpc_channel_arguments" in result.stderr
    assert "'oops'" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
