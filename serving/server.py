"""The model server process: load models, serve gRPC and REST, poll, and stop gracefully.

Startup checks that both ports are free (a taken port fails at once, not after loading),
loads every model's aspired versions, binds, then prints one line with the bound ports
(so a parent that asked for port 0 can read them). SIGTERM or SIGINT stops it: health
turns NOT_SERVING, both listeners close, gRPC calls still waiting for their request are
answered UNAVAILABLE, in-flight requests finish (up to the grace period), models unload,
and the process exits 0.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from typing import TextIO

from fmnist.errors import UserError
from fmnist.serving import ports
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
        from fmnist.serving.grpc_server import GrpcServer
        from fmnist.serving.http_server import HttpServer
        from fmnist.serving.metrics import Metrics
        from fmnist.serving.rest_api import RestApi
        from fmnist.serving.servables import ServableRegistry
        from fmnist.serving.signatures import SavedModelVersion

        tf.get_logger().setLevel(logging.ERROR)  # deprecation chatter from the v1 loader
        self.config = config
        self.metrics = Metrics()
        loader = SavedModelVersion
        if config.model_warmup:  # TF Serving's --enable_model_warmup, on by default
            from fmnist.serving.warmup import with_warmup

            loader = with_warmup(SavedModelVersion, log_info)
        self.registry = ServableRegistry(config.models, loader=loader)
        self.grpc = GrpcServer(
            [
                grpc_api.PredictionService(
                    self.registry, self.metrics, config.method_name_check, config.max_request_bytes
                ),
                grpc_api.ModelService(self.registry, self.metrics),
            ],
            host=config.host,
            port=config.grpc_port,
            threads=config.grpc_threads,
            max_message_bytes=config.max_request_bytes,
            health_check=config.grpc_health,
            socket_path=config.grpc_socket_path,
            channel_arguments=config.grpc_channel_arguments,
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
        self._started = self._stopped = False
        self._stop_polling = threading.Event()
        self._config_poller: threading.Thread | None = None

    def start(self) -> None:
        from fmnist.serving.grpc_server import BindError, SocketBindError

        self.check_ports()
        self.registry.poll_all()
        self.registry.check_labels()
        try:
            self.grpc_port = self.grpc.start()
        except SocketBindError as err:
            raise UserError(f"--grpc_socket_path {self.config.grpc_socket_path}: {err}") from None
        except BindError:
            message = ports.explain_bind_failure(
                self.config.host, self.config.grpc_port, api="gRPC", flag="--port"
            )
            raise UserError(message) from None
        grpc_at = _address(self.config.host, self.grpc_port)
        log_info(f"Running gRPC ModelServer at {grpc_at} ...")
        if self.rest is not None:
            try:
                self.rest_port = self.rest.start()
            except OSError as err:
                self.grpc.stop(0).result()
                raise UserError(
                    ports.why_not(
                        self.config.host,
                        self.config.rest_port,
                        err,
                        api="REST",
                        flag="--rest_api_port",
                    )
                ) from None
            log_info(f"Exporting HTTP/REST API at:{_address(self.config.host, self.rest_port)} ...")
        self._started = True
        self.registry.start_polling(self.config.poll_wait_seconds)
        if self.config.config_file and self.config.config_poll_seconds > 0:
            self._config_poller = threading.Thread(
                target=self._poll_config, name="config-poller", daemon=True
            )
            self._config_poller.start()

    def _poll_config(self) -> None:
        """TF Serving's --model_config_file_poll_wait_seconds: re-read the config file and
        reload when it changed; a file that does not parse keeps the current config."""
        from fmnist.serving.server_config import read_model_config_file
        from fmnist.serving.status import ServingError

        last = self.config.models
        while not self._stop_polling.wait(self.config.config_poll_seconds):
            try:
                models = read_model_config_file(self.config.config_file)
                if models != last:
                    self.registry.reload(models)
                    log_info(f"Reloaded model config file {self.config.config_file}")
                last = models
            except (UserError, ServingError) as err:
                log_info(f"keeping the current model config: {err}")

    def check_ports(self) -> None:
        """Fail at once, before loading anything, if a configured port is taken."""
        check_ports(self.config)

    def addresses(self) -> tuple[str, str]:
        rest = f"on {_address(self.config.host, self.rest_port)}" if self.rest_port else "disabled"
        return _address(self.config.host, self.grpc_port), rest

    def stop(self) -> None:
        """Graceful stop (see the module docstring); a second call does nothing."""
        if self._stopped:
            return
        self._stopped = True
        grace = self.config.shutdown_grace_seconds
        grpc_stopped = self.grpc.stop(grace)  # refuses new calls now, lets running ones finish
        if self.rest is not None:
            self.rest.stop(grace)
        grpc_stopped.result()
        self._stop_polling.set()
        if self._config_poller is not None:
            self._config_poller.join()
        self.registry.stop()


def check_ports(config: ServerConfig) -> None:
    """UserError naming the flag if the gRPC or REST port of `config` is taken."""
    ports.check_free(config.host, config.grpc_port, api="gRPC", flag="--port")
    if config.rest_port is not None:
        ports.check_free(config.host, config.rest_port, api="REST", flag="--rest_api_port")


def log_info(message: str) -> None:
    """A line on stderr shaped like TF Serving's LOG(INFO) lines (readiness scripts grep
    for the text after the `]`)."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1e6):06d}"
    print(f"{stamp}: I fmnist/serving/server.py] {message}", file=sys.stderr, flush=True)


def _address(host: str, port: int | None) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
