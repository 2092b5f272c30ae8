"""TF Serving's request logs: TFRecord files of `PredictionLog` records, read and written
without TensorFlow.

A log is what a model's `logging_config` (`log_collector_config { filename_prefix }`) makes
TF Serving write: each record holds a request, its response, and log metadata with the
model spec of the version that answered and the time. TF Serving's warm-up files are the
same format. Writers name their files `PREFIX-<UTC start time>-<pid>-<n>.tfrecord`
(`log_file_name`), so the files of a prefix sort in the order they were written, and a
reader given the prefix finds them all (`log_files`).

Reading never stops at damage: a file that ends inside a record (a writer still at work,
or one that was killed), a checksum that fails, a file that cannot be opened, a record
that is not a PredictionLog are each counted in `LogReadStats` with a one-line note, and
the other records are read, so one bad file does not hide the rest of the traffic.
"""

from __future__ import annotations

import glob
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from google.protobuf import message

from fmnist.errors import UserError
from fmnist.serving.wire.messages import PredictionLog
from fmnist.serving.wire.tfrecord import CorruptRecord, TruncatedRecord, frame, read_records

# The PredictionLog kinds that carry a request a model server answers (TF Serving's warm-up
# takes the same four); session_run_log and predict_streamed_log are not replayable.
LOG_TYPES = ("predict_log", "classify_log", "regress_log", "multi_inference_log")
_LOG_TYPE_OF_REQUEST = {
    "tensorflow.serving.PredictRequest": "predict_log",
    "tensorflow.serving.ClassificationRequest": "classify_log",
    "tensorflow.serving.RegressionRequest": "regress_log",
    "tensorflow.serving.MultiInferenceRequest": "multi_inference_log",
}
# A request is at most 64 MiB (`--max_request_bytes`), its response of the same order: a
# record claiming more is damage, refused before it is read.
DEFAULT_MAX_RECORD_BYTES = 256 << 20
MAX_NOTES = 20  # notes kept about skipped data; the counts go on
SUFFIX = ".tfrecord"

# Why data was skipped while reading (keys of `LogReadStats.skipped`).
TRUNCATED_TAIL = "truncated_tail"  # a file ends inside a record
DAMAGED_FILE = "damaged_file"  # a checksum failed: the rest of that file is skipped
UNREADABLE_FILE = "unreadable_file"
NOT_A_PREDICTION_LOG = "not_a_prediction_log"


class LogFilesError(UserError):
    """LOGS names no readable log files."""


@dataclass
class LogReadStats:
    """What reading a set of log files met: files, records, and what was skipped and why."""

    files: int = 0
    records: int = 0  # PredictionLogs read
    skipped: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)  # the first MAX_NOTES, one line each

    def skip(self, reason: str, note: str | None = None, count: int = 1) -> None:
        self.skipped[reason] += count
        if note and len(self.notes) < MAX_NOTES:
            self.notes.append(" ".join(note.split()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "records": self.records,
            "skipped": dict(sorted(self.skipped.items())),
            "notes": list(self.notes),
        }


def log_files(spec: str | os.PathLike) -> list[Path]:
    """The files LOGS names, in order: a file (or a pipe); a directory's files (not hidden);
    a glob (`logs/requests-*`); or a `filename_prefix` (`logs/requests` takes every file
    whose name starts with it). Sorted by name, which is the order a writer names them in."""
    text = os.fspath(spec)
    path = Path(text)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if not p.name.startswith(".") and p.is_file())
        if not files:
            raise LogFilesError(f"{text}: the directory holds no log files")
        return files
    if path.exists():
        return [path]
    files: list[Path] = []
    patterns = [text] if any(c in text for c in "*?[") else []
    for pattern in [*patterns, glob.escape(text) + "*"]:  # a glob, else a literal prefix
        files = sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_file())
        if files:
            break
    if not files:
        raise LogFilesError(
            f"{text}: no such file or directory, and no log file name starts with it"
        )
    return files


def read_prediction_logs(
    files: Iterable[Path],
    stats: LogReadStats,
    *,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> Iterator[tuple[str, Any]]:
    """(where, PredictionLog) for every record of `files`, streamed one record at a time;
    `where` is `FILE#INDEX`. Damage is counted in `stats`, never raised."""
    for path in files:
        stats.files += 1
        index = 0
        try:
            for data in read_records(path, max_record_bytes=max_record_bytes):
                where = f"{path}#{index}"
                index += 1
                try:
                    entry = PredictionLog.FromString(data)
                except message.DecodeError:
                    stats.skip(NOT_A_PREDICTION_LOG, f"{where}: not a PredictionLog")
                    continue
                stats.records += 1
                yield where, entry
        except TruncatedRecord as err:
            stats.skip(TRUNCATED_TAIL, f"{path}: the file ends inside the record at {err.offset}")
        except CorruptRecord as err:
            stats.skip(
                DAMAGED_FILE, f"{path}: {err} (damaged, or not a TFRecord file); rest skipped"
            )
        except OSError as err:
            stats.skip(UNREADABLE_FILE, f"{path}: unreadable: {err.strerror or err}")


# --- writing -----------------------------------------------------------------------------


def prediction_log(
    request: Any,
    response: Any,
    *,
    timestamp_secs: int | None = None,
    sampling_rate: float | None = None,
) -> Any:
    """A PredictionLog of one answered request, as TF Serving logs it: the request and
    response (Predict, Classify, Regress or MultiInference; the project's wire classes or
    the official ones), and log metadata with the model spec of the version that answered
    (from the response), the time, and the sampling rate that chose it."""
    log_type = _LOG_TYPE_OF_REQUEST.get(request.DESCRIPTOR.full_name)
    if log_type is None:
        raise ValueError(f"cannot log a {request.DESCRIPTOR.full_name}")
    entry = PredictionLog()
    logged = getattr(entry, log_type)
    _copy(request, logged.request)
    _copy(response, logged.response)
    metadata = entry.log_metadata
    if log_type == "multi_inference_log":
        results = logged.response.results
        spec = results[0].model_spec if results else logged.request.tasks[0].model_spec
    else:
        spec = logged.response.model_spec
    metadata.model_spec.CopyFrom(spec)
    metadata.timestamp_secs = int(time.time()) if timestamp_secs is None else timestamp_secs
    if sampling_rate is not None:
        metadata.sampling_config.sampling_rate = sampling_rate
    return entry


def _copy(source: Any, target: Any) -> None:
    if type(source) is type(target):
        target.CopyFrom(source)
    else:  # the official classes (another descriptor pool): the same bytes
        target.ParseFromString(source.SerializeToString())


def log_file_name(
    prefix: str | os.PathLike,
    *,
    started: datetime | None = None,
    pid: int | None = None,
    sequence: int = 0,
) -> Path:
    """`PREFIX-20260101T120000Z-<pid>-0000.tfrecord`: files of one prefix sort in the
    order they were started, and processes sharing a prefix never share a file."""
    started = started or datetime.now(timezone.utc)
    stamp = started.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    pid = os.getpid() if pid is None else pid
    return Path(f"{os.fspath(prefix)}-{stamp}-{pid}-{sequence:04d}{SUFFIX}")


class PredictionLogWriter:
    """Appends PredictionLog records to one TFRecord file. Each record is written whole in
    one call, so a reader sees at most a truncated last record; `bytes_written` tells a
    caller when to rotate to the next `log_file_name`."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._file = self.path.open("ab")
        self.bytes_written = self._file.tell()
        self.records = 0

    def write(self, entry: Any) -> int:
        """Append one PredictionLog (or its serialized bytes); returns the bytes written."""
        data = entry if isinstance(entry, bytes) else entry.SerializeToString()
        record = frame(data)
        self._file.write(record)
        self.bytes_written += len(record)
        self.records += 1
        return len(record)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> PredictionLogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_prediction_logs(path: str | os.PathLike, entries: Iterable[Any]) -> Path:
    """A log file holding `entries` (PredictionLogs), replacing any file at `path`."""
    path = Path(path)
    path.unlink(missing_ok=True)
    with PredictionLogWriter(path) as writer:
        for entry in entries:
            writer.write(entry)
    return path
