"""Run `fmnist serve` as a child process on loopback (the pipeline, the tests) and find out
where it listens: from the ready line the server prints on stdout once serving, defined
here once (`ready_line` writes it, `READY` reads it).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from fmnist.errors import UserError
from fmnist.serving.server.transport.ports import address

READY = re.compile(
    r"fmnist serve: gRPC (?:on (\S+):(\d+)|disabled), REST (?:on \S+:(\d+)|disabled)"
)


def ready_line(host: str, grpc_port: int | None, rest_port: int | None) -> str:
    """What the server prints once serving (a port of None: that API is disabled)."""

    def where(port: int | None) -> str:
        return f"on {address(host, port)}" if port else "disabled"

    return f"fmnist serve: gRPC {where(grpc_port)}, REST {where(rest_port)}"


@dataclass
class ServerProcess:
    """A running `fmnist serve` child process and where to reach it."""

    process: subprocess.Popen
    grpc_port: int | None  # None: gRPC disabled (no TensorFlow protos on a TFLite-only install)
    rest_port: int | None
    log_path: Path
    stdout: list[str] = field(default_factory=list)

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, wait, and return the exit code (kills it, and raises, if it hangs)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            _end(self.process)
            raise UserError(
                f"fmnist serve did not stop on SIGTERM within {timeout:.0f} s and was killed "
                f"(log: {self.log_path})"
            ) from None


def start_server(
    *flags: str, log_dir: Path, timeout: float = 120, python: str | None = None
) -> ServerProcess:
    """Start `fmnist serve` on free loopback ports (flags may override them); wait until ready.
    `python` runs it in another environment (default: this one's)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"server-{time.monotonic_ns()}.log"
    ports = ("--port", "0", "--rest_api_port", "auto", "--host", "127.0.0.1")
    command = [python or sys.executable, "-m", "fmnist.cli", "serve", *ports, *flags]
    # PYTHONSAFEPATH: from a clone's root, `-m` would let its `fmnist/` shadow the install.
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    env["PYTHONSAFEPATH"] = "1"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=env,
            text=True,
        )
    lines = _read_ready(process, timeout)
    match = next((m for m in map(READY.search, list(lines)) if m), None)
    if match is None or process.poll() is not None:
        _end(process)
        last = (log_path.read_text(errors="replace").strip().splitlines() or [""])[-1]
        raise UserError(
            f"fmnist serve did not become ready within {timeout:.0f} s "
            f"(exit {process.returncode}; log {log_path}): {last}"
        )
    rest = int(match.group(3)) if match.group(3) else None
    grpc = int(match.group(2)) if match.group(2) else None
    return ServerProcess(process, grpc, rest, log_path, lines)


def _end(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()


def _read_ready(process: subprocess.Popen, timeout: float) -> list[str]:
    """The child's stdout lines, read on a thread that keeps draining them; returns once the
    ready line came, the child ended, or `timeout` passed."""
    lines: list[str] = []
    ready = threading.Event()

    def read_stdout() -> None:
        for line in process.stdout:
            lines.append(line)
            if READY.search(line):
                ready.set()
        ready.set()

    threading.Thread(target=read_stdout, daemon=True).start()
    ready.wait(timeout)
    return lines
