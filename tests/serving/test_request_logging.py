"""Request logging (a model's logging_config) in real `fmnist serve` processes: every method
over gRPC and REST, replay of the log, sampling, rotation and the bound, a failing
directory, config reloads, and the TFLite path without TensorFlow."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from fmnist.serving.wire.prediction_log import LogReadStats, log_files, read_prediction_logs
from fmnist.serving.wire.tensor_proto import to_ndarray, to_tensor_proto

pytestmark = pytest.mark.integration
HALF_PLUS_TWO = "saved_model_half_plus_two_cpu"
TFLITE = "saved_model_half_plus_two_tflite"


def models_config(base_path: Path, prefix: Path | None, rate: float = 1.0) -> str:
    logging = ""
    if prefix is not None:
        logging = (
            f'logging_config {{ log_collector_config {{ type: "tfrecord" '
            f'filename_prefix: "{prefix}" }} sampling_config {{ sampling_rate: {rate} }} }}'
        )
    return f'model_config_list {{ config {{ name: "hp2" base_path: "{base_path}" {logging} }} }}'


@pytest.fixture
def serve(model_server, serving_fixtures: Path, tmp_path: Path):
    """serve(rate=1.0, *flags, model=HALF_PLUS_TWO) -> (server, config path, log prefix)."""

    def start(rate: float | None = 1.0, *flags: str, model: str = HALF_PLUS_TWO):
        (tmp_path / "request-logs").mkdir(exist_ok=True)  # (the server's own log is in logs/)
        prefix = tmp_path / "request-logs" / "requests"
        config = tmp_path / "models.config"
        config.write_text(
            models_config(serving_fixtures / model, prefix if rate is not None else None, rate or 0)
        )
        monitoring = serving_fixtures / "monitoring_config.txt"
        server = model_server(
            *("--model_config_file", str(config)),
            *("--monitoring_config_file", str(monitoring)),
            *flags,
        )
        return server, config, prefix

    return start


def stub(server) -> prediction_service_pb2_grpc.PredictionServiceStub:
    return prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(server.grpc_target)
    )


def predict_request(values) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "hp2"
    request.inputs["x"].ParseFromString(to_tensor_proto(np.float32(values)).SerializeToString())
    return request


def examples_input(target, value: float) -> None:
    example = target.example_list.examples.add()
    example.features.feature["x"].float_list.value.append(value)


def metric(server, name: str, **labels: str) -> float:
    """A sample of the server's Prometheus metrics (0 when absent)."""
    text = requests.get(server.rest_url + "/monitoring/prometheus/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def written(server) -> float:
    return metric(server, "fmnist_serving_request_log_records_total", model="hp2")


def wait_until(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def read_log(prefix: Path) -> list:
    stats = LogReadStats()
    entries = [entry for _, entry in read_prediction_logs(log_files(prefix), stats)]
    assert not stats.skipped, stats.to_dict()
    return entries


def rest(server, action: str, body: dict) -> dict:
    answer = requests.post(f"{server.rest_url}/v1/models/hp2:{action}", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def send_every_method(server) -> None:
    service = stub(server)
    assert service.Predict(predict_request([1.0, 2.0]), timeout=30).outputs["y"].float_val == [
        2.5,
        3.0,
    ]
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name, classify.model_spec.signature_name = "hp2", "classify_x_to_y"
    examples_input(classify.input, 3.0)
    service.Classify(classify, timeout=30)
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name, regress.model_spec.signature_name = "hp2", "regress_x_to_y"
    examples_input(regress.input, 4.0)
    service.Regress(regress, timeout=30)
    multi = inference_pb2.MultiInferenceRequest()
    for signature in ("regress_x_to_y", "regress_x_to_y2"):
        task = multi.tasks.add(method_name="tensorflow/serving/regress")
        task.model_spec.name, task.model_spec.signature_name = "hp2", signature
    examples_input(multi.input, 5.0)
    service.MultiInference(multi, timeout=30)
    assert rest(server, "predict", {"instances": [6.0, 7.0]}) == {"predictions": [5.0, 5.5]}
    rest(server, "classify", {"signature_name": "classify_x_to_y", "examples": [{"x": 8.0}]})
    rest(server, "regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 9.0}]})


def test_every_method_is_logged_from_grpc_and_rest(serve) -> None:
    server, _, prefix = serve()
    started = int(time.time())
    send_every_method(server)
    wait_until(lambda: written(server) == 7)
    entries = read_log(prefix)
    kinds = Counter(entry.WhichOneof("log_type") for entry in entries)
    assert kinds == {
        "predict_log": 2,
        "classify_log": 2,
        "regress_log": 2,
        "multi_inference_log": 1,
    }
    for entry in entries:
        metadata = entry.log_metadata
        assert (metadata.model_spec.name, metadata.model_spec.version.value) == ("hp2", 123)
        assert started <= metadata.timestamp_secs <= time.time()
        assert metadata.sampling_config.sampling_rate == 1.0
    grpc_predict, rest_predict = [e.predict_log for e in entries if e.HasField("predict_log")]
    assert to_ndarray(grpc_predict.request.inputs["x"]).tolist() == [1.0, 2.0]
    assert to_ndarray(rest_predict.request.inputs["x"]).tolist() == [6.0, 7.0]
    assert to_ndarray(rest_predict.response.outputs["y"]).tolist() == [5.0, 5.5]
    examples = [
        e.regress_log.request.input.example_list.examples
        for e in entries
        if e.HasField("regress_log")
    ]
    assert [list(e[0].features.feature["x"].float_list.value) for e in examples] == [[4.0], [9.0]]
    (multi,) = [e.multi_inference_log for e in entries if e.HasField("multi_inference_log")]
    assert [r.regression_result.regressions[0].value for r in multi.response.results] == [4.5, 5.5]


def test_the_logged_traffic_replays_with_full_agreement(serve, tmp_path: Path) -> None:
    server, _, prefix = serve()
    for value in range(40):
        if value % 2:
            stub(server).Predict(predict_request([value, value + 0.5]), timeout=30)
        else:
            rest(server, "predict", {"instances": [float(value)]})
    wait_until(lambda: written(server) == 40)
    report = tmp_path / "replay.json"
    command = [
        sys.executable,
        "-m",
        "fmnist.cli",
        "replay",
        str(prefix),
        "--grpc",
        server.grpc_target,
    ]
    done = subprocess.run(
        [*command, "--latency-samples", "0", "--json", str(report)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(report.read_text())
    assert result["agreement"] == 1.0


def test_the_sampling_rate_is_honoured(serve) -> None:
    server, _, prefix = serve(0.25)
    service = stub(server)
    for value in range(400):
        service.Predict(predict_request([value]), timeout=30)
    assert server.stop() == 0  # the queue is written before the process exits
    logged = len(read_log(prefix))
    assert 60 <= logged <= 140  # 100 expected; 4.6 standard deviations either side


def test_files_rotate_and_stay_within_the_bound(serve) -> None:
    flags = ("--request_log_file_bytes", "2000", "--request_log_total_bytes", "8000")
    server, _, prefix = serve(1.0, *flags)
    service = stub(server)
    for value in range(300):
        service.Predict(predict_request([value]), timeout=30)
    assert server.stop() == 0
    files = log_files(prefix)
    assert len(files) >= 3
    assert sum(path.stat().st_size for path in files) <= 8000
    entries = read_log(prefix)
    assert to_ndarray(entries[-1].predict_log.request.inputs["x"]).tolist() == [299.0]
    assert len(entries) < 300  # the oldest were deleted


def test_a_failing_directory_drops_records_and_every_request_is_answered(serve) -> None:
    server, _, prefix = serve()
    shutil.rmtree(prefix.parent)  # the directory goes away under the running server
    service = stub(server)
    for value in range(50):
        assert service.Predict(predict_request([value]), timeout=30).outputs["y"].float_val == [
            value / 2 + 2
        ]
    dropped = {"model": "hp2", "reason": "write_error"}
    wait_until(lambda: metric(server, "fmnist_serving_request_log_dropped_total", **dropped) == 50)
    assert written(server) == 0
    assert server.log().count("dropping records") == 1  # said once, not per record
    prefix.parent.mkdir()
    service.Predict(predict_request([1.0]), timeout=30)
    wait_until(lambda: written(server) == 1)
    assert "writing again" in server.log()


def test_a_config_reload_turns_logging_on_and_off(serve, serving_fixtures: Path) -> None:
    server, config, prefix = serve(None, "--model_config_file_poll_wait_seconds", "0.1")
    base = serving_fixtures / HALF_PLUS_TWO
    service = stub(server)

    def reload(text: str, times: int) -> None:
        config.write_text(text)
        wait_until(lambda: server.log().count("Reloaded model config file") == times)

    service.Predict(predict_request([1.0]), timeout=30)
    reload(models_config(base, prefix, 1.0), 1)
    for value in range(5):
        service.Predict(predict_request([value]), timeout=30)
    wait_until(lambda: written(server) == 5)
    config.write_text(models_config(base, prefix, 2.0))  # refused: the old config stays
    wait_until(lambda: "sampling_rate 2.0 is not between 0 and 1" in server.log())
    service.Predict(predict_request([1.0]), timeout=30)
    wait_until(lambda: written(server) == 6)
    reload(models_config(base, None), 2)
    for value in range(5):
        service.Predict(predict_request([value]), timeout=30)
    assert server.stop() == 0
    assert len(read_log(prefix)) == 6


@pytest.mark.parametrize(
    ("logging", "says"),
    [
        ('filename_prefix: "/no/such/dir/req"', "directory /no/such/dir does not exist"),
        ('type: "kafka" filename_prefix: "LOGS/req"', "log collector type 'kafka'"),
    ],
)
def test_a_bad_logging_config_stops_the_start_in_one_line(
    serving_fixtures: Path, tmp_path: Path, logging: str, says: str
) -> None:
    config = tmp_path / "models.config"
    collector = logging.replace("LOGS", str(tmp_path))
    base = serving_fixtures / HALF_PLUS_TWO
    config.write_text(
        f'model_config_list {{ config {{ name: "hp2" base_path: "{base}" '
        f"logging_config {{ log_collector_config {{ {collector} }} }} }} }}"
    )
    done = subprocess.run(
        [sys.executable, "-m", "fmnist.cli", "serve", "--model_config_file", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], done.stderr


def test_the_tflite_server_without_tensorflow_logs(serve, tmp_path: Path, monkeypatch) -> None:
    hidden = tmp_path / "no-tensorflow"
    hidden.mkdir()
    # As if TensorFlow were not installed: importing it fails, find_spec finds nothing.
    names = ("tensorflow", "tensorflow_serving", "keras")
    (hidden / "sitecustomize.py").write_text(
        f"import sys\nsys.modules.update(dict.fromkeys({names!r}))\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(hidden))
    server, _, prefix = serve(1.0, "--prefer_tflite_model", model=TFLITE)
    maps = Path(f"/proc/{server.process.pid}/maps").read_text()
    assert "/tensorflow/" not in maps
    stub(server).Predict(predict_request([1.0, 2.0]), timeout=30)
    assert rest(server, "predict", {"instances": [6.0]}) == {"predictions": [5.0]}
    wait_until(lambda: written(server) == 2)
    outputs = [to_ndarray(e.predict_log.response.outputs["y"]).tolist() for e in read_log(prefix)]
    assert outputs == [[2.5, 3.0], [5.0]]
