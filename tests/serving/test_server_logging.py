"""The server's log and its thread pools, against real `fmnist serve` processes: a request a
servable fails is answered INTERNAL and its traceback is logged with the method, model and
version; `--log_format json` keeps TF Serving's start-up lines (as JSON); REST model work is
bounded by `--rest_api_num_threads`."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests

pytestmark = pytest.mark.integration

TFLITE_MODEL = "saved_model_half_plus_two_tflite/00000123"
# TF Serving feeds half_plus_two any shape; XNNPACK cannot take rank 8: the runtime fails.
RANK_8 = {"inputs": np.ones([2] * 8).tolist()}


@pytest.fixture
def tflite_model(serving_fixtures: Path, tmp_path: Path) -> list[str]:
    base = tmp_path / "half_plus_two"
    shutil.copytree(serving_fixtures / TFLITE_MODEL, base / "123")
    return [
        "--prefer_tflite_model",
        "--model_name",
        "half_plus_two",
        "--model_base_path",
        str(base),
    ]


def _predict(server, body: dict) -> requests.Response:
    url = f"{server.rest_url}/v1/models/half_plus_two:predict"
    return requests.post(url, json=body, timeout=30)


def test_a_request_the_runtime_fails_is_internal_with_its_traceback_logged(
    model_server, tflite_model
):
    server = model_server(*tflite_model)
    answer = _predict(server, RANK_8)
    assert (answer.status_code, answer.json()) == (500, {"error": "Failed to allocate tensors"})
    log = server.log()
    line = "rest predict of model half_plus_two version 123 answered INTERNAL"
    assert f"] {line}: Failed to allocate tensors\nTraceback (most recent call last):" in log
    assert "The above exception was the direct cause" in log  # the runtime's own error
    assert _predict(server, {"instances": [1.0]}).json() == {"predictions": [2.5]}


def test_json_logs_keep_the_start_up_lines_and_carry_the_failed_request(model_server, tflite_model):
    server = model_server(*tflite_model, "--log_format", "json")
    assert _predict(server, RANK_8).status_code == 500
    entries = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    messages = [entry["message"] for entry in entries]
    assert f"Running gRPC ModelServer at 127.0.0.1:{server.grpc_port} ..." in messages
    assert f"Exporting HTTP/REST API at:127.0.0.1:{server.rest_port} ..." in messages
    (failure,) = [entry for entry in entries if entry["level"] == "ERROR"]
    assert {k: failure[k] for k in ("api", "method", "model", "version")} == {
        "api": "rest",
        "method": "predict",
        "model": "half_plus_two",
        "version": "123",
    }
    assert failure["traceback"].startswith("Traceback (most recent call last):")


def test_log_level_warning_leaves_out_the_info_lines(model_server, tflite_model):
    server = model_server(*tflite_model, "--log_level", "warning")
    assert _predict(server, {"instances": [1.0]}).status_code == 200
    assert "Running gRPC ModelServer" not in server.log()
    assert "version 123 available" not in server.log()


def _python_threads(pid: int) -> int:
    """Threads of the process named as its main thread: Python's (TensorFlow's and gRPC's own
    threads name themselves)."""
    main = Path(f"/proc/{pid}/comm").read_text()
    return sum(task.read_text() == main for task in Path(f"/proc/{pid}/task").glob("*/comm"))


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
def test_rest_model_work_is_bounded_by_rest_api_num_threads(
    model_server, fmnist_models, tmp_path: Path
):
    """Six concurrent REST requests get two threads for their model runs, however many gRPC
    threads there are (a thread pool makes its threads as work waits for one)."""
    model_dir = tmp_path / "fmnist"
    model_dir.mkdir()
    (model_dir / "1").symlink_to(fmnist_models[3], target_is_directory=True)
    server = model_server(
        *("--model_name", "fmnist", "--model_base_path", str(model_dir)),
        *("--rest_api_num_threads", "2", "--grpc_max_threads", "8"),
    )
    images = np.zeros((1, 28, 28), np.uint8).tolist()
    body = {"signature_name": "slow", "inputs": {"images": images, "sleep_ms": 50}}
    url = f"{server.rest_url}/v1/models/fmnist:predict"
    assert requests.post(url, json=body, timeout=60).status_code == 200  # one REST thread
    before = _python_threads(server.process.pid)
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: requests.post(url, json=body, timeout=60), range(6)))
    assert [a.status_code for a in answers] == [200] * 6
    assert _python_threads(server.process.pid) - before <= 1  # the second REST thread
