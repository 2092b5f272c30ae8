"""`--server_processes N`: N server processes sharing the gRPC and REST ports (SO_REUSEPORT),
each with its own copy of the models, so that Python's one-core-per-process limit does not
cap the server. The kernel spreads connections (not the calls within one) across them.

The first process binds the ports (a free one for port 0); the others then bind the same
ports. Prometheus metrics are added up across the processes (prometheus_client's
multiprocess mode). SIGTERM or SIGINT stops them all gracefully; if one ends on its own,
the others are stopped too and the exit code says so. Each process polls the base paths
itself, so during a rollout they switch versions within one poll of each other; a gRPC
HandleReloadConfigRequest is refused (it would reach only one of them).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import shutil
import signal
import sys
import tempfile
import threading
from dataclasses import replace
from typing import TextIO

from fmnist.errors import UserError
from fmnist.serving.server.core.config import ServerConfig

_METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # where prometheus_client's processes keep counts


def run_processes(config: ServerConfig, out: TextIO) -> int:
    """Serve from `config.server_processes` processes until SIGTERM or SIGINT."""
    from fmnist.serving.server.app import address, log_info

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    metrics_dir = tempfile.mkdtemp(prefix="fmnist-serve-metrics-")
    os.environ[_METRICS_DIR] = metrics_dir  # inherited by the processes started below
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked threads
    ready = context.Queue()
    processes: list[multiprocessing.process.BaseProcess] = []
    try:
        first = replace(config, reuse_port=True)
        processes.append(_start(context, first, ready, 0))
        grpc_port, rest_port = _wait_ready(ready, processes, stop)
        shared = replace(
            first, grpc_port=grpc_port or 0, rest_port=rest_port, grpc_socket_path=None
        )
        for index in range(1, config.server_processes):
            processes.append(_start(context, shared, ready, index))
        for _ in range(1, config.server_processes):
            _wait_ready(ready, processes, stop)
        host = config.host
        grpc = f"on {address(host, grpc_port)}" if grpc_port else "disabled"
        rest = f"on {address(host, rest_port)}" if rest_port else "disabled"
        print(f"fmnist serve: gRPC {grpc}, REST {rest}", file=out, flush=True)
        log_info(f"serving from {config.server_processes} processes sharing the ports")
        while not stop.wait(0.5):
            if any(not p.is_alive() for p in processes):
                log_info("a server process ended on its own; stopping the others")
                return _stop_all(processes, config) or 1
        print("fmnist serve: shutting down", file=sys.stderr, flush=True)
        return _stop_all(processes, config)
    finally:
        _stop_all(processes, config)
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _start(context, config: ServerConfig, ready, index: int):
    process = context.Process(
        target=_serve_one, args=(config, ready), name=f"fmnist-serve-{index}", daemon=False
    )
    process.start()
    return process


def _wait_ready(ready, processes, stop: threading.Event) -> tuple[int | None, int | None]:
    """The ports one process reports once serving; UserError with its reason if it fails."""
    while not stop.is_set():
        try:
            kind, *payload = ready.get(timeout=0.5)
        except queue.Empty:
            if any(p.exitcode not in (None, 0) for p in processes):
                raise UserError("a server process failed to start (see the log)") from None
            continue
        if kind == "error":
            raise UserError(payload[0])
        return payload[0], payload[1]
    raise UserError("interrupted while the server processes were starting")


def _stop_all(processes, config: ServerConfig) -> int:
    """SIGTERM to every process still running, wait (grace and a margin), kill the rest;
    0 when every process ended cleanly."""
    for process in processes:
        if process.is_alive():
            os.kill(process.pid, signal.SIGTERM)
    code = 0
    for process in processes:
        process.join(config.shutdown_grace_seconds + 30)
        if process.is_alive():
            process.kill()
            process.join()
        code = code or (process.exitcode or 0)
    return 1 if code else 0


def _serve_one(config: ServerConfig, ready) -> None:
    """One process: load, bind (sharing the ports), report the ports, serve until SIGTERM."""
    from fmnist.serving.server.app import ModelServer

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        server = ModelServer(config)
        server.start()
    except UserError as err:
        ready.put(("error", str(err)))
        sys.exit(2)
    ready.put(("ready", server.grpc_port, server.rest_port))
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
