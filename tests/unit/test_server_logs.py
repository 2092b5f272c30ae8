"""The server's log (serving/server/logs.py): TF Serving's line format, levels, JSON lines.
No TensorFlow, no processes: the handler writes to a string."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from fmnist.serving.server import logs

SERVER = logging.getLogger("fmnist.serving.server.app")


@pytest.fixture
def configured():
    """configure(level, fmt) -> the text the log got; the logging set-up is restored after."""
    root, project = logging.getLogger(), logging.getLogger("fmnist")
    saved = root.handlers[:], root.level, project.level

    def configure(level: str = "info", fmt: str = "text") -> io.StringIO:
        stream = io.StringIO()
        logs.configure(level, fmt, stream)
        return stream

    yield configure
    root.handlers[:], root.level = saved[0], saved[1]
    project.setLevel(saved[2])


def test_text_lines_are_tf_servings(configured) -> None:
    stream = configured()
    SERVER.info("Running gRPC ModelServer at %s ...", "127.0.0.1:8500")
    line = stream.getvalue().rstrip("\n")
    # As glog prints them: readiness scripts grep for the text after the `]`.
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}: I fmnist/serving/server/app\.py:\d+\] "
        r"Running gRPC ModelServer at 127\.0\.0\.1:8500 \.\.\.",
        line,
    ), line


@pytest.mark.parametrize(
    ("level", "printed"),
    [
        ("debug", ["D", "I", "W", "E"]),
        ("info", ["I", "W", "E"]),
        ("warning", ["W", "E"]),
        ("error", ["E"]),
    ],
)
def test_the_level_sets_the_least_severe_line_printed(configured, level, printed) -> None:
    stream = configured(level)
    for log in (SERVER.debug, SERVER.info, SERVER.warning, SERVER.error):
        log("a line")
    letters = [line.split(": ", 1)[1][0] for line in stream.getvalue().splitlines()]
    assert letters == printed


def test_other_libraries_log_warnings_only(configured) -> None:
    stream = configured("debug")
    logging.getLogger("tornado.general").info("chatter")
    logging.getLogger("tornado.general").warning("worth seeing")
    assert [line.rsplit("] ", 1)[1] for line in stream.getvalue().splitlines()] == ["worth seeing"]


def test_json_lines_carry_the_request_and_the_traceback(configured) -> None:
    stream = configured(fmt="json")
    context = {"api": "grpc", "method": "predict", "model": "m", "version": "3"}
    try:
        raise RuntimeError("the runtime's own words")
    except RuntimeError:
        SERVER.exception("failed", extra=context)
    SERVER.info("Running gRPC ModelServer at 127.0.0.1:8500 ...")
    failure, ready = (json.loads(line) for line in stream.getvalue().splitlines())
    assert {k: failure[k] for k in ("level", "message", *context)} == {
        "level": "ERROR",
        "message": "failed",
        **context,
    }
    assert failure["traceback"].startswith("Traceback (most recent call last):")
    assert "RuntimeError: the runtime's own words" in failure["traceback"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", ready["time"])
    assert ready["source"].startswith("fmnist/serving/server/app.py:")
    assert ready["message"] == "Running gRPC ModelServer at 127.0.0.1:8500 ..."
    assert "traceback" not in ready
