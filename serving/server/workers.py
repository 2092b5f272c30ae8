"""`--server_processes N`: N server processes sharing the ports (SO_REUSEPORT), each with its
own models, so that Python's one core per process does not cap the server. The first binds
the ports, the others the same ones; metrics add up (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import queue
import shutil
import signal
import sys
import tempfile
from dataclasses import replace

from fmnist.errors import UserError
from fmnist.serving.server.app import ModelServer, prepare_process, serve_until_signal
from fmnist.serving.server.core.config import ServerConfig

log = logging.getLogger(__name__)
_METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # where prometheus_client's processes keep counts


class ProcessGroup:
    """`config.server_processes` server processes, as `app.serve_until_signal` runs them."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.processes: list[multiprocessing.process.BaseProcess] = []
        self._ports: tuple[int | None, int | None] = (None, None)
        self._metrics_dir: str | None = None

    def start(self) -> None:
        self._metrics_dir = tempfile.mkdtemp(prefix="fmnist-serve-metrics-")
        os.environ[_METRICS_DIR] = self._metrics_dir  # inherited by the processes
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked threads
        ready = context.Queue()
        first = replace(self.config, reuse_port=True)
        self._spawn(context, first, ready)
        grpc_port, rest_port = self._wait_ready(ready)
        shared = replace(
            first, grpc_port=grpc_port or 0, rest_port=rest_port, grpc_socket_path=None
        )
        for _ in range(1, self.config.server_processes):
            self._spawn(context, shared, ready)
        for _ in range(1, self.config.server_processes):
            self._wait_ready(ready)
        self._ports = (grpc_port, rest_port)
        log.info("serving from %d processes sharing the ports", self.config.server_processes)

    def _spawn(self, context, config: ServerConfig, ready) -> None:
        name = f"fmnist-serve-{len(self.processes)}"
        process = context.Process(target=_serve_one, args=(config, ready), name=name)
        process.start()
        self.processes.append(process)

    def _wait_ready(self, ready) -> tuple[int | None, int | None]:
        """The ports one process reports once serving; UserError if it fails."""
        while True:
            try:
                kind, *payload = ready.get(timeout=0.5)
            except queue.Empty:
                if any(p.exitcode not in (None, 0) for p in self.processes):
                    raise UserError("a server process failed to start (see the log)") from None
                continue
            if kind == "error":
                raise UserError(payload[0])
            return payload[0], payload[1]

    def ports(self) -> tuple[int | None, int | None]:
        return self._ports

    def wait(self) -> None:
        """Until one of the processes ends."""
        multiprocessing.connection.wait([p.sentinel for p in self.processes])

    def stop(self) -> int:
        """SIGTERM to every process, kill those still running after the grace; 0 if all ended
        cleanly."""
        for process in self.processes:
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM)
        code = 0
        for process in self.processes:
            process.join(self.config.shutdown_grace_seconds + 30)
            if process.is_alive():
                process.kill()
                process.join()
            code = code or (process.exitcode or 0)
        if self._metrics_dir:
            shutil.rmtree(self._metrics_dir, ignore_errors=True)
        return 1 if code else 0


def _serve_one(config: ServerConfig, ready) -> None:
    """One process: load, bind (sharing the ports), report the ports, serve until SIGTERM."""
    prepare_process(config)
    try:
        server = ModelServer(config)
        code = serve_until_signal(server, lambda *ports: ready.put(("ready", *ports)))
    except UserError as err:
        ready.put(("error", str(err)))
        sys.exit(2)
    sys.exit(code)
