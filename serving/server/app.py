"""The model server: composes the parts (servables/ load versions, core/ holds the registry
and the data plane, api/ translates gRPC and REST, transport/ serves them) and runs them.

Startup checks that both ports are free (a taken port fails at once, not after loading),
loads every model's aspired versions, binds, then prints one line with the bound ports
(so a parent that asked for port 0 can read them). SIGTERM or SIGINT stops it: health
turns NOT_SERVING, both listeners close, gRPC calls still waiting for their request are
answered UNAVAILABLE, in-flight requests finish (up to the grace period), models unload,
and the process exits 0.

Without TensorFlow (an `[edge]` install), `--prefer_tflite_model` versions serve over gRPC
and REST alike: TF is imported only to load a SavedModel. Where grpcio is missing (32-bit
Pi OS without Debian's python3-grpcio), gRPC is left out with one logged line and the ready
line says `gRPC disabled`.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TextIO

from fmnist.errors import UserError
from fmnist.serving.server.api.rest_api import RestApi
from fmnist.serving.server.core.config import ServerConfig
from fmnist.serving.server.core.data_plane import DataPlane, no_trace
from fmnist.serving.server.core.metrics import Metrics
from fmnist.serving.server.core.registry import ServableRegistry
from fmnist.serving.server.servables.loader import version_loader
from fmnist.serving.server.transport import ports
from fmnist.serving.server.transport.http_server import HttpServer

GRPC_NEEDS_GRPCIO = (
    "gRPC API needs grpcio (pip install grpcio; on 32-bit Raspberry Pi OS: apt install "
    "python3-grpcio); serving REST only"
)


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
        print(f"fmnist serve: gRPC {grpc_at}, REST {rest_at}", file=out, flush=True)
        while not stop.wait(0.5):
            pass
        print("fmnist serve: shutting down", file=sys.stderr, flush=True)
    finally:
        server.stop()
    return 0


class ModelServer:
    """gRPC + REST over one data plane; usable in-process too (start/stop)."""

    def __init__(self, config: ServerConfig):
        trace = no_trace
        if importlib.util.find_spec("tensorflow") is not None:
            import tensorflow as tf

            tf.get_logger().setLevel(logging.ERROR)  # deprecation chatter from the v1 loader
            if config.enable_profiler:  # each request a span in a captured profile
                trace = tf.profiler.experimental.Trace
        self.config = config
        self.metrics = Metrics()
        loader = version_loader(
            config.prefer_tflite_model,
            warmup_log=log_info if config.model_warmup else None,  # --enable_model_warmup
            batching=config.batching,  # --enable_batching: concurrent Predicts share runs
            observe_batch=self.metrics.observe_batch,
            tf_threads=(config.tf_intra_op_threads, config.tf_inter_op_threads),
        )
        self.registry = ServableRegistry(config.models, loader=loader)
        # Work that blocks takes one of these threads: a gRPC call's model run or large
        # request, and a small REST predict's model run (its parsing stays on the loop).
        self.model_threads = ThreadPoolExecutor(config.grpc_threads, thread_name_prefix="model")
        self.plane = DataPlane(
            self.registry, self.metrics, config.method_name_check, trace, self.model_threads
        )
        self.grpc = self._grpc_server()
        if self.grpc is None and config.rest_port is None:
            raise UserError(
                f"nothing to serve: {GRPC_NEEDS_GRPCIO.split(' (')[0]}, and REST is disabled "
                "(--rest_api_port 0)"
            )
        self.rest = None
        if config.rest_port is not None:
            rest_api = RestApi(self.plane)
            self.rest = HttpServer(
                rest_api.handle,
                inline=rest_api.handle_inline,
                host=config.host,
                port=config.rest_port,
                threads=config.rest_threads,
                max_body_bytes=config.max_request_bytes,
                timeout_s=config.rest_timeout_ms / 1000,
                metrics=self.metrics,
                metrics_path=config.monitoring_path,
                reuse_port=config.reuse_port,
            )
        self.grpc_port = self.rest_port = None
        self._started = self._stopped = False
        self._stop_polling = threading.Event()
        self._config_poller: threading.Thread | None = None

    def _grpc_server(self) -> Any:
        """The gRPC server, or None (logged) when grpcio is missing."""
        config = self.config
        try:
            from fmnist.serving.server.api.grpc_api import GrpcApi
            from fmnist.serving.server.transport.grpc_server import GrpcServer
        except ImportError as err:
            log_info(f"{GRPC_NEEDS_GRPCIO} (missing: {err.name or err})")
            return None
        reload = config.server_processes == 1  # sibling processes would not follow a reload
        services = GrpcApi(self.plane, config.max_request_bytes, reload).services()
        if config.enable_profiler:
            services.update(_profiler_services())
        return GrpcServer(
            services,
            host=config.host,
            port=config.grpc_port,
            pool=self.model_threads,
            max_message_bytes=config.max_request_bytes,
            health_check=config.grpc_health,
            socket_path=config.grpc_socket_path,
            channel_arguments=config.grpc_channel_arguments,
            reuse_port=config.reuse_port,
        )

    def start(self) -> None:
        self.check_ports()
        self.registry.poll_all()
        self.registry.check_labels()
        if self.grpc is not None:
            self._start_grpc()
        if self.rest is not None:
            try:
                self.rest_port = self.rest.start()
            except OSError as err:
                if self.grpc is not None:
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
            log_info(f"Exporting HTTP/REST API at:{address(self.config.host, self.rest_port)} ...")
        self._started = True
        self.registry.start_polling(self.config.poll_wait_seconds)
        if self.config.config_file and self.config.config_poll_seconds > 0:
            self._config_poller = threading.Thread(
                target=self._poll_config, name="config-poller", daemon=True
            )
            self._config_poller.start()

    def _start_grpc(self) -> None:
        from fmnist.serving.server.transport.grpc_server import BindError, SocketBindError

        try:
            self.grpc_port = self.grpc.start()
        except SocketBindError as err:
            raise UserError(f"--grpc_socket_path {self.config.grpc_socket_path}: {err}") from None
        except BindError:
            message = ports.explain_bind_failure(
                self.config.host, self.config.grpc_port, api="gRPC", flag="--port"
            )
            raise UserError(message) from None
        grpc_at = address(self.config.host, self.grpc_port)
        log_info(f"Running gRPC ModelServer at {grpc_at} ...")

    def _poll_config(self) -> None:
        """TF Serving's --model_config_file_poll_wait_seconds: re-read the config file and
        reload when it changed; a file that does not parse keeps the current config."""
        from fmnist.serving.server.core.config import read_model_config_file
        from fmnist.serving.wire.status import StatusError

        last = self.config.models
        while not self._stop_polling.wait(self.config.config_poll_seconds):
            try:
                models = read_model_config_file(self.config.config_file)
                if models != last:
                    self.registry.reload(models)
                    log_info(f"Reloaded model config file {self.config.config_file}")
                last = models
            except (UserError, StatusError) as err:
                log_info(f"keeping the current model config: {err}")

    def check_ports(self) -> None:
        """Fail at once, before loading anything, if a configured port is taken (sibling
        processes share their ports: the first of them checked)."""
        if not self.config.reuse_port:
            check_ports(self.config, grpc=self.grpc is not None)

    def addresses(self) -> tuple[str, str]:
        """("on HOST:PORT" or "disabled") for gRPC and for REST."""
        host = self.config.host
        grpc = f"on {address(host, self.grpc_port)}" if self.grpc_port else "disabled"
        rest = f"on {address(host, self.rest_port)}" if self.rest_port else "disabled"
        return grpc, rest

    def stop(self) -> None:
        """Graceful stop (see the module docstring); a second call does nothing."""
        if self._stopped:
            return
        self._stopped = True
        grace = self.config.shutdown_grace_seconds
        grpc_stopped = None
        if self.grpc is not None:  # refuses new calls now, lets running ones finish
            grpc_stopped = self.grpc.stop(grace)
        if self.rest is not None:
            self.rest.stop(grace)
        if grpc_stopped is not None:
            grpc_stopped.result()
        self._stop_polling.set()
        if self._config_poller is not None:
            self._config_poller.join()
        self.model_threads.shutdown(wait=False, cancel_futures=True)
        self.registry.stop()


def _profiler_services() -> dict:
    """TF's profiler service (--enable_profiler), or none (logged) without TensorFlow."""
    from fmnist.serving.server.api import profiler_api

    if not profiler_api.available():
        log_info("--enable_profiler: TensorFlow is not installed; no profiler service")
        return {}
    return profiler_api.ProfilerApi().services()


def check_ports(config: ServerConfig, grpc: bool = True) -> None:
    """UserError naming the flag if the gRPC (when served) or REST port of `config` is taken."""
    if grpc:
        ports.check_free(config.host, config.grpc_port, api="gRPC", flag="--port")
    if config.rest_port is not None:
        ports.check_free(config.host, config.rest_port, api="REST", flag="--rest_api_port")


def log_info(message: str) -> None:
    """A line on stderr shaped like TF Serving's LOG(INFO) lines (readiness scripts grep
    for the text after the `]`)."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1e6):06d}"
    print(f"{stamp}: I fmnist/serving/server/app.py] {message}", file=sys.stderr, flush=True)


def address(host: str, port: int | None) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
