"""Request logging's pure parts: the logging_config check, rotation and the total bound, the
bounded queue, sampling, and a REST call as the gRPC request it equals."""

from __future__ import annotations

import math
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from google.protobuf import text_format

from fmnist.errors import UserError
from fmnist.serving.server.api.logged_calls import logged_messages
from fmnist.serving.server.core.config import ModelConfig, RequestLogging, models_from_proto
from fmnist.serving.server.core.data_plane import Answered, Call, Target
from fmnist.serving.server.core.log_files import RotatingLog
from fmnist.serving.server.core.metrics import Metrics
from fmnist.serving.server.core.request_log import PendingCalls, RequestLogger, encode
from fmnist.serving.wire import messages as pb
from fmnist.serving.wire.prediction_log import (
    LogReadStats,
    log_file_name,
    log_files,
    read_prediction_logs,
)
from fmnist.serving.wire.status import Code
from fmnist.serving.wire.tensor_proto import to_ndarray
from fmnist.serving.wire.tfrecord import frame


def config_of(tmp_path: Path, logging: str):
    text = (
        f'model_config_list {{ config {{ name: "m" base_path: "{tmp_path}" '
        f"logging_config {{ {logging} }} }} }}"
    )
    return models_from_proto(text_format.Parse(text, pb.ModelServerConfig()), "models.config")


def test_a_logging_config_gives_an_absolute_prefix_and_its_rate(tmp_path: Path) -> None:
    collector = f'log_collector_config {{ type: "tfrecord" filename_prefix: "{tmp_path}/req" }}'
    (model,) = config_of(tmp_path, collector + " sampling_config { sampling_rate: 0.25 }")
    assert model.logging == RequestLogging(f"{tmp_path}/req", 0.25)


def test_a_relative_prefix_is_under_the_working_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (model,) = config_of(tmp_path, 'log_collector_config { filename_prefix: "req" }')
    assert model.logging == RequestLogging(f"{tmp_path}/req", 0.0)


@pytest.mark.parametrize(
    ("logging", "says"),
    [
        ('log_collector_config { filename_prefix: "/no/such/dir/req" }', "does not exist"),
        ('log_collector_config { filename_prefix: "P" } sampling_config { sampling_rate: 1.5 }',
         "sampling_rate 1.5 is not between 0 and 1"),
        ('log_collector_config { filename_prefix: "P" } sampling_config { sampling_rate: -0.1 }',
         "not between 0 and 1"),
        ('log_collector_config { filename_prefix: "P" } sampling_config { sampling_rate: nan }',
         "not between 0 and 1"),
        ('log_collector_config { type: "kafka" filename_prefix: "P" }',
         "log collector type 'kafka' is not supported"),
        ("sampling_config { sampling_rate: 1 }", "needs log_collector_config.filename_prefix"),
    ],
)  # fmt: skip
def test_a_bad_logging_config_is_one_line(tmp_path: Path, logging: str, says: str) -> None:
    with pytest.raises(UserError) as raised:
        config_of(tmp_path, logging.replace('"P"', f'"{tmp_path}/req"'))
    assert says in str(raised.value)
    assert str(raised.value).startswith("models.config: model 'm'")
    assert "\n" not in str(raised.value)


def record(size: int) -> bytes:
    entry = pb.PredictionLog()
    entry.predict_log.request.model_spec.name = "x" * size
    return entry.SerializeToString()


def test_files_rotate_by_size_and_read_back_whole(tmp_path: Path) -> None:
    files = RotatingLog(str(tmp_path / "req"), file_bytes=1000, total_bytes=1 << 20)
    for _ in range(30):
        files.write(record(200))
    files.close()
    written = log_files(tmp_path / "req")
    per_file = 1000 // len(frame(record(200)))
    assert len(written) == math.ceil(30 / per_file)
    stats = LogReadStats()
    assert len(list(read_prediction_logs(written, stats))) == 30
    assert not stats.skipped


def test_the_total_bound_deletes_the_oldest_files(tmp_path: Path) -> None:
    files = RotatingLog(str(tmp_path / "req"), file_bytes=1000, total_bytes=3000)
    for index in range(100):
        files.write(record(200 + index % 2))
    files.close()
    written = log_files(tmp_path / "req")
    assert sum(path.stat().st_size for path in written) <= 3000
    per_file = 1000 // len(frame(record(200)))
    last = math.ceil(100 / per_file) - 1
    assert written[-1].name.endswith(f"-{os.getpid()}-{last:04d}.tfrecord")  # newest kept
    assert len(written) == 3000 // (per_file * len(frame(record(200))))


def test_the_bound_leaves_files_of_running_writers(tmp_path: Path) -> None:
    prefix = str(tmp_path / "req")
    running = log_file_name(prefix, pid=1)  # init runs as long as the machine
    running.write_bytes(b"x" * 2000)
    gone = log_file_name(prefix, pid=2**22 + 7)  # above Linux's pid_max: never running
    gone.write_bytes(b"x" * 2000)
    files = RotatingLog(prefix, file_bytes=1000, total_bytes=3000)
    files.write(record(10))
    files.close()
    assert running.exists() and not gone.exists()


def test_the_queue_refuses_past_its_records_and_bytes() -> None:
    pending = PendingCalls(records=2, max_bytes=100)
    assert pending.offer("a", 10) and pending.offer("b", 10)
    assert not pending.offer("c", 10)
    assert list(pending.take_all()) == ["a", "b"]
    assert not pending.offer("d", 81)  # 20 bytes still being written, 81 more pass 100
    pending.release(20)
    assert pending.offer("e", 100)
    assert list(pending.take_all()) == ["e"] and not pending.take_all()


def answered_call(method: str = "predict", code: Code = Code.OK, api: str = "grpc") -> Call:
    call = Call(api, method, Target("m"), size=10, code=code)
    call.answered = Answered("m", 1, "serving_default")
    return call


def logger_for(rate: float | None, metrics: Metrics) -> RequestLogger:
    logging = RequestLogging("/nowhere/req", rate) if rate is not None else None
    manager = SimpleNamespace(config=ModelConfig("m", Path("/"), logging=logging))
    registry = SimpleNamespace(managers={"m": manager})
    return RequestLogger(registry, metrics, 1000, 10_000)  # never started: nothing written


@pytest.mark.parametrize(
    ("rate", "call", "queued"),
    [
        (1.0, answered_call(), 200),
        (0.0, answered_call(), 0),
        (None, answered_call(), 0),
        (1.0, answered_call(code=Code.INVALID_ARGUMENT), 0),
        (1.0, answered_call(method="metadata"), 0),
        (1.0, answered_call(method="multi_inference"), 200),
    ],
)
def test_which_calls_are_sampled(rate, call, queued: int) -> None:
    logger = logger_for(rate, Metrics())
    for _ in range(200):
        logger.observe(call)
    assert len(logger._pending) == queued


def test_a_full_queue_drops_and_counts() -> None:
    metrics = Metrics()
    logger = logger_for(1.0, metrics)
    for _ in range(5000):
        logger.observe(answered_call())
    dropped = metrics.registry.get_sample_value(
        "fmnist_serving_request_log_dropped_total", {"model": "m", "reason": "queue_full"}
    )
    assert len(logger._pending) == 4096 and dropped == 5000 - 4096


def test_a_rest_predict_is_logged_as_its_grpc_request() -> None:
    call = answered_call(api="rest")
    call.target = Target("m", label="stable")
    call.request = {"signature_name": "", "instances": "..."}
    call.inputs = {"images": np.arange(6, dtype=np.uint8).reshape(1, 2, 3)}
    call.result = {"scores": np.float32([[0.25, 0.75]])}
    entry = pb.PredictionLog.FromString(encode(call, 0.5, 1234, logged_messages))
    request, response = entry.predict_log.request, entry.predict_log.response
    assert request.model_spec.version_label == "stable"
    assert to_ndarray(request.inputs["images"]).tolist() == call.inputs["images"].tolist()
    assert to_ndarray(response.outputs["scores"]).tolist() == [[0.25, 0.75]]
    assert response.model_spec.version.value == 1
    metadata = entry.log_metadata
    assert (metadata.model_spec.version.value, metadata.timestamp_secs) == (1, 1234)
    assert metadata.sampling_config.sampling_rate == 0.5


def test_a_rest_classify_is_logged_with_its_examples() -> None:
    call = answered_call(method="classify", api="rest")
    call.request = {"examples": [{"x": 1.0}]}
    example = pb.Example()
    example.features.feature["x"].float_list.value.append(1.0)
    call.inputs = [example.SerializeToString()]
    call.result = pb.ClassificationResult()
    call.result.classifications.add().classes.add(label="a", score=0.5)
    entry = pb.PredictionLog.FromString(encode(call, 1.0, 1, logged_messages))
    examples = entry.classify_log.request.input.example_list.examples
    assert [e.features.feature["x"].float_list.value[0] for e in examples] == [1.0]
    assert entry.classify_log.response.result == call.result
