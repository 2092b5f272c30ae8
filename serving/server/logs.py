"""The server's log: every module's `logging` logger (all under `fmnist`) and the libraries'
warnings, to stderr at `--log_level`, as TF Serving's lines (`--log_format text`: readiness
scripts wait for "Running gRPC ModelServer at ...") or one JSON object a line (`json`).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TextIO

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
CONTEXT = ("api", "method", "model", "version")  # request fields a record may carry
_LETTERS = {"DEBUG": "D", "INFO": "I", "WARNING": "W", "ERROR": "E", "CRITICAL": "F"}


def configure(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> None:
    """One handler: the project's records from `level` up, everyone else's from WARNING up."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLines() if fmt == "json" else TfServingLines())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))
    logging.getLogger("fmnist").setLevel(level.upper())


def _source(record: logging.LogRecord) -> str:
    """Where a record comes from, as glog names it: path/file.py:line."""
    if record.name.startswith("fmnist."):
        return f"{record.name.replace('.', '/')}.py:{record.lineno}"
    return f"{record.filename}:{record.lineno}"


class TfServingLines(logging.Formatter):
    """`2026-01-02 03:04:05.123456: I fmnist/serving/server/app.py:42] message`, as glog."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        micros = int(record.created % 1 * 1e6)
        letter = _LETTERS.get(record.levelname, "I")
        line = f"{stamp}.{micros:06d}: {letter} {_source(record)}] {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonLines(logging.Formatter):
    """One JSON object a record."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.created % 1 * 1e6):06d}Z",
            "level": record.levelname,
            "source": _source(record),
            "message": record.getMessage(),
        }
        entry.update({k: getattr(record, k) for k in CONTEXT if hasattr(record, k)})
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry)
