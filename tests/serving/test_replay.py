"""`fmnist replay` as users run it, against real `fmnist serve` processes: logs written with
the project's writer from real requests replay to the same answers on the version that
logged them (exit 0), fail on another version (exit 1), and exit 2 when nothing can be
checked; TF Serving's own half_plus_two answers Predict, Classify, Regress and
MultiInference replays over gRPC and REST."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fmnist import dataset
from fmnist.serving.client import GrpcClient
from fmnist.serving.wire import messages as pb
from fmnist.serving.wire.prediction_log import PredictionLogWriter, prediction_log
from fmnist.serving.wire.tensor_proto import to_tensor_proto

pytestmark = pytest.mark.integration
LOGGED = 300


def fmnist(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fmnist.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )


def assert_one_line_error(done: subprocess.CompletedProcess, fragment: str) -> None:
    assert done.returncode == 2, done.stdout[-1000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and fragment in errors[0], done.stderr


@pytest.fixture(scope="module")
def served(fmnist_models: dict, session_model_server, tmp_path_factory):
    """Model `fav`: version 1 always answers class 3, version 2 class 7; stable -> 1."""
    base = tmp_path_factory.mktemp("replay") / "fav"
    shutil.copytree(fmnist_models[3], base / "1")
    shutil.copytree(fmnist_models[7], base / "2")
    config = base.parent / "models.config"
    config.write_text(
        f"model_config_list {{ config {{ name: 'fav' base_path: '{base}' "
        "model_platform: 'tensorflow' model_version_policy { all {} } "
        "version_labels { key: 'stable' value: 1 } } }"
    )
    return session_model_server("--model_config_file", str(config))


@pytest.fixture(scope="module")
def request_log(served, data_dir: Path, tmp_path_factory) -> Path:
    """LOGGED real test images sent one per request to `stable`, logged as TF Serving does."""
    images = dataset.load_test(data_dir).images[:LOGGED]
    path = tmp_path_factory.mktemp("request-log") / "requests-0000.tfrecord"
    with GrpcClient(served.grpc_target, "fav") as client, PredictionLogWriter(path) as writer:
        for image in images:
            request = pb.PredictRequest()
            request.model_spec.name, request.model_spec.version_label = "fav", "stable"
            request.inputs["images"].CopyFrom(to_tensor_proto(image[None]))
            writer.write(prediction_log(request, client.call("Predict", request)))
    return path


@pytest.mark.parametrize("api", ["grpc", "rest"])
def test_the_logged_version_answers_as_logged(served, request_log, tmp_path, api) -> None:
    endpoint = served.grpc_target if api == "grpc" else served.rest_url
    out = tmp_path / "replay.json"
    done = fmnist(
        "replay", str(request_log), f"--{api}", endpoint, "--label", "stable",
        "--latency-samples", "20", "--json", str(out), "--markdown", str(tmp_path / "r.md"),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "verdict            PASS" in done.stdout
    result = json.loads(out.read_text())
    assert (result["logged_calls"], result["replayed"], result["answers"]) == (LOGGED,) * 3
    assert result["agreement"] == 1.0 and result["max_score_diff"] < 1e-6
    assert result["logged_versions"] == {"1": LOGGED} and result["model"] == "fav"
    if api == "grpc":  # REST answers do not name the version
        assert result["answered_versions"] == {"1": LOGGED}
    latency = result["latency"]
    assert latency["target"]["n"] == latency["logged"]["n"] == 20
    assert latency["logged"]["answers_as_logged"] == 20
    assert "| verdict | PASS |" in (tmp_path / "r.md").read_text()


def test_another_version_fails_and_says_what_the_answers_became(served, request_log) -> None:
    done = fmnist(
        "replay", str(request_log), "--grpc", served.grpc_target, "--version", "2",
        "--latency-samples", "0",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    assert "agreement          0.00% (min 99.00%)" in done.stdout
    assert f"3                 {LOGGED:>5}        0      0.00%  7 {LOGGED}" in done.stdout


def test_a_version_that_is_not_served_cannot_be_checked(served, request_log) -> None:
    done = fmnist("replay", str(request_log), "--grpc", served.grpc_target, "--version", "9")
    assert_one_line_error(done, "NOT_FOUND")


def test_damaged_logs_are_counted_and_the_rest_replayed(served, request_log, tmp_path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    content = request_log.read_bytes()
    (logs / "a-truncated.tfrecord").write_bytes(content[: len(content) // 2 + 7])
    damaged = bytearray(content)
    damaged[len(damaged) // 2] ^= 0xFF
    (logs / "b-damaged.tfrecord").write_bytes(bytes(damaged))
    (logs / "c-readme.txt").write_text("these are the request logs of fav\n")
    out = tmp_path / "replay.json"
    done = fmnist(
        "replay", str(logs), "--grpc", served.grpc_target, "--label", "stable",
        "--latency-samples", "0", "--json", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["skipped"] == {"damaged_file": 2, "truncated_tail": 1}
    # two copies of the log given, the part of each before its damage replayed
    assert 0 < result["replayed"] == result["logged_calls"] < 2 * LOGGED
    assert result["agreement"] == 1.0
    assert any("c-readme.txt" in note and "not a TFRecord file" in note for note in result["notes"])


@pytest.mark.parametrize(
    ("logs", "fragment"),
    [
        ("nowhere/requests", "no such file or directory, and no log file name starts with it"),
        ("empty.tfrecord", "nothing to replay in 1 file: 0 records read"),
    ],
)
def test_logs_with_nothing_to_replay_are_exit_2(served, tmp_path, logs, fragment) -> None:
    (tmp_path / "empty.tfrecord").write_bytes(b"")
    done = fmnist("replay", str(tmp_path / logs), "--grpc", served.grpc_target)
    assert_one_line_error(done, fragment)


# --- TF Serving's own model, every method ----------------------------------------------------


def _examples(message, xs) -> None:
    for x in xs:
        message.input.example_list.examples.add().features.feature["x"].float_list.value.append(x)


def _tf_serving_calls() -> list[tuple[str, object]]:
    predict = pb.PredictRequest()
    predict.model_spec.name = "half_plus_two"
    predict.inputs["x"].CopyFrom(to_tensor_proto(np.array([[1.0], [2.0]], np.float32)))
    classify = pb.ClassificationRequest()
    classify.model_spec.name, classify.model_spec.signature_name = (
        "half_plus_two",
        "classify_x_to_y",
    )
    _examples(classify, [1.0, 5.0])
    regress = pb.RegressionRequest()
    regress.model_spec.name, regress.model_spec.signature_name = "half_plus_two", "regress_x_to_y"
    _examples(regress, [3.0])
    multi = pb.MultiInferenceRequest()
    _examples(multi, [4.0, 6.0])
    for signature, method in (("classify_x_to_y", "classify"), ("regress_x_to_y", "regress")):
        task = multi.tasks.add(method_name=f"tensorflow/serving/{method}")
        task.model_spec.name, task.model_spec.signature_name = "half_plus_two", signature
    return [("Predict", predict), ("Classify", classify), ("Regress", regress),
            ("MultiInference", multi)]  # fmt: skip


@pytest.fixture(scope="module")
def tf_serving_log(half_plus_two_server, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hp2-log") / "requests.tfrecord"
    with (
        GrpcClient(half_plus_two_server.grpc_target, "half_plus_two") as client,
        PredictionLogWriter(path) as writer,
    ):
        for _ in range(5):
            for method, request in _tf_serving_calls():
                writer.write(prediction_log(request, client.call(method, request)))
    return path


def test_every_method_replays_over_grpc(half_plus_two_server, tf_serving_log, tmp_path) -> None:
    out = tmp_path / "replay.json"
    done = fmnist(
        "replay", str(tf_serving_log), "--grpc", half_plus_two_server.grpc_target,
        "--json", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(out.read_text())
    # per round: Predict 2 values, Classify 2 classes, Regress 1 value, MultiInference 2 + 2
    assert result["replayed"] == 20 and result["answers"] == 5 * 9 and result["agreed"] == 45
    assert result["values"] == 5 * 5 and result["answered_versions"] == {"123": 20}
    assert result["latency"]["logged"]["answers_as_logged"] == result["latency"]["logged"]["n"]


def test_rest_replays_all_but_multi_inference(half_plus_two_server, tf_serving_log, tmp_path):
    out = tmp_path / "replay.json"
    done = fmnist(
        "replay", str(tf_serving_log), "--rest", half_plus_two_server.rest_url,
        "--latency-samples", "0", "--json", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["skipped"] == {"not_over_this_api": 5} and result["replayed"] == 15
    assert result["agreement"] == 1.0 and result["max_value_diff"] == 0.0
