"""TF Serving's request logs (TFRecord files of PredictionLog) without TensorFlow: what the
writer writes reads back, LOGS may name a file, a directory, a glob or a filename prefix,
and damaged, truncated or foreign data is counted and noted, never raised."""

from __future__ import annotations

import os
import struct
import threading
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from fmnist.serving.wire import messages as pb
from fmnist.serving.wire.prediction_log import (
    MAX_NOTES,
    LogFilesError,
    LogReadStats,
    PredictionLogWriter,
    log_file_name,
    log_files,
    prediction_log,
    read_prediction_logs,
    write_prediction_logs,
)
from fmnist.serving.wire.tensor_proto import to_tensor_proto
from fmnist.serving.wire.tfrecord import frame, masked_crc


def predict_entry(version: int = 1, timestamp: int = 1_700_000_000) -> pb.PredictionLog:
    request = pb.PredictRequest()
    request.model_spec.name = "fashion_mnist"
    request.inputs["images"].CopyFrom(to_tensor_proto(np.zeros((1, 28, 28), np.uint8)))
    response = pb.PredictResponse()
    response.model_spec.name = "fashion_mnist"
    response.model_spec.version.value = version
    response.model_spec.signature_name = "serving_default"
    response.outputs["probabilities"].CopyFrom(to_tensor_proto(np.full((1, 10), 0.1, np.float32)))
    return prediction_log(request, response, timestamp_secs=timestamp, sampling_rate=0.5)


def read_all(spec: str | Path) -> tuple[list[tuple[str, pb.PredictionLog]], LogReadStats]:
    stats = LogReadStats()
    return list(read_prediction_logs(log_files(spec), stats)), stats


def test_a_predict_log_records_the_answering_version_the_time_and_the_rate() -> None:
    entry = predict_entry(version=7)
    assert entry.WhichOneof("log_type") == "predict_log"
    metadata = entry.log_metadata
    assert metadata.model_spec.name == "fashion_mnist"
    assert metadata.model_spec.version.value == 7
    assert metadata.timestamp_secs == 1_700_000_000
    assert metadata.sampling_config.sampling_rate == 0.5


@pytest.mark.parametrize(
    ("request_class", "response_class", "log_type"),
    [
        (pb.ClassificationRequest, pb.ClassificationResponse, "classify_log"),
        (pb.RegressionRequest, pb.RegressionResponse, "regress_log"),
    ],
)
def test_classify_and_regress_logs_take_the_response_model_spec(
    request_class, response_class, log_type
) -> None:
    request, response = request_class(), response_class()
    response.model_spec.name, response.model_spec.version.value = "hp", 123
    entry = prediction_log(request, response)
    assert entry.WhichOneof("log_type") == log_type
    assert entry.log_metadata.model_spec.version.value == 123
    assert entry.log_metadata.timestamp_secs > 1_600_000_000


def test_a_multi_inference_log_takes_its_first_result_model_spec() -> None:
    request = pb.MultiInferenceRequest()
    request.tasks.add().model_spec.name = "hp"
    response = pb.MultiInferenceResponse()
    result = response.results.add()
    result.model_spec.name, result.model_spec.version.value = "hp", 123
    entry = prediction_log(request, response)
    assert entry.WhichOneof("log_type") == "multi_inference_log"
    assert entry.log_metadata.model_spec.version.value == 123


def test_other_messages_cannot_be_logged() -> None:
    with pytest.raises(ValueError, match=r"cannot log a .*GetModelStatusRequest"):
        prediction_log(pb.GetModelStatusRequest(), pb.GetModelStatusResponse())


def test_what_the_writer_writes_reads_back_in_order(tmp_path: Path) -> None:
    entries = [predict_entry(version=v) for v in (1, 2, 3)]
    path = write_prediction_logs(tmp_path / "log.tfrecord", entries)
    read, stats = read_all(path)
    assert [entry for _, entry in read] == entries
    assert [where for where, _ in read] == [f"{path}#{i}" for i in range(3)]
    assert (stats.files, stats.records, stats.skipped) == (1, 3, {})


def test_the_writer_appends_and_counts_bytes(tmp_path: Path) -> None:
    path = tmp_path / "log.tfrecord"
    with PredictionLogWriter(path) as writer:
        size = writer.write(predict_entry())
    with PredictionLogWriter(path) as writer:
        assert writer.bytes_written == size
        writer.write(predict_entry().SerializeToString())
        assert writer.records == 1 and writer.bytes_written == 2 * size
    assert len(read_all(path)[0]) == 2


def test_log_file_names_sort_in_the_order_they_were_started(tmp_path: Path) -> None:
    early = datetime(2026, 1, 1, 9, 0, 0, tzinfo=timezone.utc)
    late = datetime(2026, 1, 1, 10, 0, 0, tzinfo=timezone.utc)
    names = [
        log_file_name(tmp_path / "requests", started=late, pid=5, sequence=0),
        log_file_name(tmp_path / "requests", started=early, pid=9, sequence=1),
        log_file_name(tmp_path / "requests", started=early, pid=9, sequence=0),
    ]
    assert names[2].name == "requests-20260101T090000Z-9-0000.tfrecord"
    assert sorted(names) == [names[2], names[1], names[0]]


# --- what LOGS may name ------------------------------------------------------------------------


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    """requests-a and requests-b (one record each), a hidden file and an unrelated file."""
    directory = tmp_path / "logs"
    directory.mkdir()
    write_prediction_logs(directory / "requests-b.tfrecord", [predict_entry(version=2)])
    write_prediction_logs(directory / "requests-a.tfrecord", [predict_entry(version=1)])
    write_prediction_logs(directory / ".requests-c.tmp", [predict_entry(version=3)])
    write_prediction_logs(directory / "other.tfrecord", [predict_entry(version=4)])
    return directory


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        ("logs/requests-a.tfrecord", ["requests-a.tfrecord"]),
        ("logs", ["other.tfrecord", "requests-a.tfrecord", "requests-b.tfrecord"]),
        ("logs/requests", ["requests-a.tfrecord", "requests-b.tfrecord"]),
        ("logs/*-b.tfrecord", ["requests-b.tfrecord"]),
    ],
    ids=["file", "directory", "prefix", "glob"],
)
def test_logs_name_a_file_a_directory_a_prefix_or_a_glob(
    log_dir: Path, spec: str, names: list[str]
) -> None:
    found = log_files(log_dir.parent / spec)
    assert [path.name for path in found] == names


@pytest.mark.parametrize(
    ("spec", "message"),
    [("logs/none", "no log file name starts with it"), ("empty", "holds no log files")],
)
def test_logs_that_name_nothing_are_one_line_errors(log_dir: Path, spec: str, message: str) -> None:
    (log_dir.parent / "empty").mkdir()
    with pytest.raises(LogFilesError, match=message):
        log_files(log_dir.parent / spec)


def test_a_prefix_with_glob_characters_matches_them_literally(tmp_path: Path) -> None:
    write_prediction_logs(tmp_path / "req[1]-x.tfrecord", [predict_entry()])
    assert [p.name for p in log_files(tmp_path / "req[1]")] == ["req[1]-x.tfrecord"]


def test_a_pipe_is_read_as_a_log(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def feed() -> None:  # the writer end, as `fmnist replay <(gsutil cat ...)` has it
        with fifo.open("wb") as pipe:
            pipe.write(frame(predict_entry().SerializeToString()))

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        read, stats = read_all(fifo)
    finally:
        writer.join(30)
    assert len(read) == 1 and stats.records == 1


# --- damage is counted, never raised -----------------------------------------------------------


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-10])


def _flip_last_record(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))


def _append_garbage_record(path: Path) -> None:
    with path.open("ab") as file:
        file.write(frame(b"\xff\xff\xff not a protobuf"))


def _text_file(path: Path) -> None:
    path.write_text("this is a README, not a log\n" * 10)


def _huge_claim(path: Path) -> None:
    with path.open("ab") as file:  # a valid header that claims 1 TB, then a few bytes
        length = struct.pack("<Q", 1 << 40)
        file.write(length + struct.pack("<I", masked_crc(length)) + b"x" * 100)


HOSTILE = [
    ("truncated tail", _truncate, 1, {"truncated_tail": 1}, "ends inside the record at"),
    ("flipped byte", _flip_last_record, 1, {"damaged_file": 1}, "corrupted record at"),
    ("garbage record", _append_garbage_record, 2, {"not_a_prediction_log": 1}, "#2: not a"),
    ("not a TFRecord", _text_file, 0, {"damaged_file": 1}, "not a TFRecord file"),
    ("length claims 1 TB", _huge_claim, 2, {"damaged_file": 1}, "over the limit"),
]


@pytest.mark.parametrize(
    ("damage", "kept", "skipped", "note"),
    [pytest.param(d, k, s, n, id=name) for name, d, k, s, n in HOSTILE],
)
def test_damage_is_counted_and_the_next_file_still_read(
    tmp_path: Path, damage, kept: int, skipped: dict, note: str
) -> None:
    bad = write_prediction_logs(tmp_path / "a.tfrecord", [predict_entry(1), predict_entry(2)])
    damage(bad)
    write_prediction_logs(tmp_path / "b.tfrecord", [predict_entry(3)])
    read, stats = read_all(tmp_path)
    versions = [entry.log_metadata.model_spec.version.value for _, entry in read]
    assert versions == [*[1, 2][:kept], 3]
    assert stats.skipped == skipped and stats.files == 2
    (line,) = stats.notes
    assert note in line and str(bad) in line and "\n" not in line


def test_a_file_that_vanished_before_it_was_read_is_counted(tmp_path: Path) -> None:
    gone = write_prediction_logs(tmp_path / "a.tfrecord", [predict_entry()])
    files = log_files(tmp_path)
    gone.unlink()  # rotated away between listing and reading
    stats = LogReadStats()
    assert list(read_prediction_logs(files, stats)) == []
    assert stats.skipped == {"unreadable_file": 1}
    assert "No such file or directory" in stats.notes[0]


def test_notes_are_bounded_while_counts_go_on(tmp_path: Path) -> None:
    for i in range(MAX_NOTES + 5):
        path = write_prediction_logs(tmp_path / f"{i:03d}.tfrecord", [predict_entry()])
        _truncate(path)
    _, stats = read_all(tmp_path)
    assert stats.skipped == {"truncated_tail": MAX_NOTES + 5}
    assert len(stats.notes) == MAX_NOTES
