"""The request log files of one `filename_prefix`: appended to, rotated by size, and bounded
in total by deleting the oldest.

Files are named by `prediction_log.log_file_name` (`PREFIX-<UTC start>-<pid>-<n>.tfrecord`),
so name order is age order. The bound counts every file of the prefix, earlier runs' too,
but deletes only finished files: this process's earlier ones and those of processes no
longer running. Sibling server processes (`--server_processes`) each bound their own.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
from pathlib import Path

from fmnist.serving.wire.prediction_log import SUFFIX, PredictionLogWriter, log_file_name

FRAMING = 16  # a TFRecord's length, checksums
_WRITER_PID = re.compile(r"-(\d+)-\d+" + re.escape(SUFFIX) + "$")


class RotatingLog:
    """Appends framed records under `prefix`; a new file when the next record would pass
    `file_bytes`, and before one opens, the oldest finished files go until they and a full
    new file fit in `total_bytes`."""

    def __init__(self, prefix: str, file_bytes: int, total_bytes: int) -> None:
        self.prefix = prefix
        self.file_bytes = file_bytes
        self.total_bytes = max(total_bytes, file_bytes)
        self._writer: PredictionLogWriter | None = None
        self._sequence = 0

    def write(self, record: bytes) -> None:
        """Append one serialized PredictionLog (OSError if the disk or directory fails; the
        file is then closed, and the next record starts a new one)."""
        writer = self._writer
        if writer is not None and writer.bytes_written + len(record) + FRAMING > self.file_bytes:
            self.close()  # full: a file passes file_bytes only by holding one larger record
        try:
            if self._writer is None:
                self._open()
            self._writer.write(record)
        except OSError:
            self._abandon()
            raise

    def flush(self) -> None:
        if self._writer is not None:
            try:
                self._writer.flush()
            except OSError:
                self._abandon()
                raise

    def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()

    def _abandon(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(OSError):  # its data is lost either way; counted already
                writer.close()

    def _open(self) -> None:
        self._make_room()
        path = log_file_name(self.prefix, sequence=self._sequence)
        self._sequence += 1
        self._writer = PredictionLogWriter(path)

    def _make_room(self) -> None:
        """Delete the oldest finished files until they and a full new file fit the bound."""
        files = []
        for name in sorted(glob.glob(glob.escape(self.prefix) + "-*" + SUFFIX)):
            try:
                files.append((name, os.stat(name).st_size))
            except OSError:
                continue  # deleted meanwhile
        total = sum(size for _, size in files)
        for name, size in files:
            if total + self.file_bytes <= self.total_bytes:
                break
            if _finished(name):
                Path(name).unlink(missing_ok=True)
                total -= size


def _finished(name: str) -> bool:
    """Whether no running writer holds the file: it is this process's (the current file is
    never listed: it opens after the cleanup) or its writer's process is gone."""
    match = _WRITER_PID.search(name)
    if match is None:
        return False  # not a log file's name: left alone
    pid = int(match.group(1))
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # another user's running process
    return False
