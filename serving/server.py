"""The model server process: load models, serve gRPC and REST, poll, and stop gracefully.

Startup loads every model's aspired versions before binding, then prints one line with
the bound ports (so a parent that asked for port 0 can read them). SIGTERM or SIGINT
stops it: health turns NOT_SERVING, both listeners close, in-flight requests finish
(up to the grace period), models unload, and the process exits 0.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import TextIO

from fmnist.errors import UserError
from fmnist.serving.server_config import ServerConfig


def run(config: ServerConfig, out: TextIO = sys.stdout) -> int:
    """Serve until SIGTERM or SIGINT; returns the exit code.

    The signal handlers stay for the rest of the process: a second signal during the
    graceful stop must not kill it half-way (it is the process's last act anyway)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = ModelServer(config)
    try:
        server.start()
        grpc_at, rest_at = server.addresses()
        print(f"fmnist serve: gRPC on {grpc_at}, REST {rest_at}", file=out, flush=True)
        while not stop.wait(0.5):
            pass
        print("fmnist serve: shutting down", file=sys.stderr, flush=True)
    finally:
        server.stop()
    return 0


class ModelServer:
    """gRPC + REST over one servable registry; usable in-process too (start/stop)."""

    def __init__(self, config: ServerConfig):
        import tensorflow as tf

        from fmnist.serving import grpc_api
        from fmnist.serving.http_server import HttpServer
        from fmnist.serving.metrics import Metrics
        from fmnist.serving.rest_api import RestApi
        from fmnist.serving.servables import ServableRegistry
        from fmnist.serving.signatures import SavedModelVersion

        tf.get_logger().setLevel(logging.ERROR)  # deprecation chatter from the v1 loader
        self.config = config
        self.metrics = Metrics()
        self.registry = ServableRegistry(config.models, loader=SavedModelVersion)
        self.grpc, self.health = grpc_api.build_server(
            self.registry,
            self.metrics,
            threads=config.grpc_threads,
            max_message_bytes=config.max_request_bytes,
            method_check=config.method_name_check,
            health_check=config.grpc_health,
        )
        self.rest = None
        if config.rest_port is not None:
            self.rest = HttpServer(
                RestApi(self.registry, self.metrics, config.method_name_check),
                host=config.host,
                port=config.rest_port,
                threads=config.rest_threads,
                max_body_bytes=config.max_request_bytes,
                timeout_s=config.rest_timeout_ms / 1000,
                metrics=self.metrics,
                metrics_path=config.monitoring_path,
            )
        self.grpc_port = self.rest_port = None
        self._started = False

    def start(self) -> None:
        host = self.config.host
        self.registry.poll_all()
        self.registry.check_labels()
        try:
            self.grpc_port = self.grpc.add_insecure_port(_address(host, self.config.grpc_port))
        except RuntimeError as err:
            message = f"cannot listen for gRPC on {host}:{self.config.grpc_port}: {err}"
            raise UserError(message) from None
        if not self.grpc_port:
            raise UserError(f"cannot listen for gRPC on {host}:{self.config.grpc_port}")
        if self.rest is not None:
            try:
                self.rest_port = self.rest.start()
            except OSError as err:
                raise UserError(
                    f"cannot listen for REST on {host}:{self.config.rest_port}: {err.strerror}"
                ) from None
        self.grpc.start()
        self._started = True
        self.registry.start_polling(self.config.poll_wait_seconds)

    def addresses(self) -> tuple[str, str]:
        rest = f"on {_address(self.config.host, self.rest_port)}" if self.rest_port else "disabled"
        return _address(self.config.host, self.grpc_port), rest

    def stop(self) -> None:
        grace = self.config.shutdown_grace_seconds
        if self.health is not None:
            self.health.shut_down()
        stopped = self.grpc.stop(grace)  # refuses new RPCs now, lets running ones finish
        if self.rest is not None:
            self.rest.stop(grace)
        stopped.wait()
        self.registry.stop()


def _address(host: str, port: int | None) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
