"""The model server: composes the parts (servables/ load versions, core/ holds the registry
and the data plane, api/ translates gRPC and REST, transport/ serves them) and runs them.

Startup checks both addresses (a bad one fails at once, not after loading), loads every
model's aspired versions, binds, then prints the ready line with the bound ports. SIGTERM
or SIGINT stops it: health turns NOT_SERVING, both listeners close, gRPC calls still
waiting for their request are answered UNAVAILABLE, in-flight requests finish (up to the
grace period), models unload, and the process exits 0. Without TensorFlow, model.tflite
versions serve (TF is imported only to load a SavedModel); without grpcio, REST serves
alone (logged; the ready line says `gRPC disabled`).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TextIO

from fmnist.errors import UserError
from fmnist.serving.server import logs
from fmnist.serving.server.api.logged_calls import logged_messages
from fmnist.serving.server.api.rest_api import RestApi
from fmnist.serving.server.core.config import ServerConfig
from fmnist.serving.server.core.data_plane import DataPlane, no_trace
from fmnist.serving.server.core.metrics import Metrics
from fmnist.serving.server.core.registry import ServableRegistry
from fmnist.serving.server.core.request_log import RequestLogger
from fmnist.serving.server.process import ready_line
from fmnist.serving.server.servables.loader import version_loader
from fmnist.serving.server.transport import ports
from fmnist.serving.server.transport.http_server import HttpServer

log = logging.getLogger(__name__)
GRPC_NEEDS_GRPCIO = (
    "gRPC API needs grpcio (pip install grpcio; on 32-bit Raspberry Pi OS: apt install "
    "python3-grpcio); serving REST only"
)


def prepare_process(config: ServerConfig) -> None:
    """What every server process sets up first: its log, and TensorFlow's C++ log level."""
    logs.configure(config.log_level, config.log_format)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def run(
    config: ServerConfig,
    make: Callable[[ServerConfig], Any] | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Serve `config` (with `make(config)`, default one ModelServer) until SIGTERM or SIGINT;
    print the ready line on `out` once serving. Returns the exit code."""
    prepare_process(config)
    server = (make or ModelServer)(config)

    def announce(grpc_port: int | None, rest_port: int | None) -> None:
        print(ready_line(config.host, grpc_port, rest_port), file=out, flush=True)

    return serve_until_signal(server, announce)


def serve_until_signal(server: Any, announce: Callable[[int | None, int | None], Any]) -> int:
    """`server.start()`, `announce(*server.ports())` (gRPC, REST; None: disabled), then serve
    until SIGTERM or SIGINT (handled on this thread's event loop) or until `server.wait()`
    returns (one of its processes ended); then `server.stop()`, graceful, gives the exit
    code. A signal during start-up stops it as soon as it has started. `server` is a
    ModelServer, or several (workers.ProcessGroup)."""

    async def serve() -> int:
        loop = asyncio.get_running_loop()
        signalled = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, signalled.set)
        ended_alone = False
        try:
            server.start()  # on this thread (a process's children are this thread's)
            announce(*server.ports())
            ended = loop.run_in_executor(None, server.wait)
            signal_task = loop.create_task(signalled.wait())
            await asyncio.wait((ended, signal_task), return_when=asyncio.FIRST_COMPLETED)
            ended_alone = ended.done()
            if ended_alone:
                log.warning("a server process ended on its own; stopping the others")
            else:
                log.info("fmnist serve: shutting down")
        finally:
            code = await loop.run_in_executor(None, server.stop)
        return code or int(ended_alone)

    return asyncio.run(serve())


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
            warmup=config.model_warmup,  # --enable_model_warmup
            batching=config.batching,  # --enable_batching: concurrent Predicts share runs
            observe_batch=self.metrics.observe_batch,
            tf_threads=(config.tf_intra_op_threads, config.tf_inter_op_threads),
        )
        self.registry = ServableRegistry(config.models, loader=loader)
        # Each API's model work (and its large requests' decoding) on threads of its own.
        self.pools = {
            "grpc": ThreadPoolExecutor(config.grpc_threads, thread_name_prefix="grpc"),
            "rest": ThreadPoolExecutor(config.rest_threads, thread_name_prefix="rest"),
        }
        self.plane = DataPlane(
            self.registry, self.metrics, config.method_name_check, trace, self.pools
        )
        self.request_log = self._request_logger()
        self.grpc = self._grpc_server()
        if self.grpc is None and config.rest_port is None:
            raise UserError(
                f"nothing to serve: {GRPC_NEEDS_GRPCIO.split(' (')[0]}, and REST is disabled "
                "(--rest_api_port 0)"
            )
        self.rest = self._rest_server()
        self.grpc_port = self.rest_port = None
        self._stopping = False
        self._stopped = threading.Event()

    def _request_logger(self) -> RequestLogger:
        """The data plane's request log: each model's logging_config, read live from the
        registry, so a config reload applies at once."""
        config = self.config
        logger = RequestLogger(
            self.registry,
            self.metrics,
            config.request_log_file_bytes,
            config.request_log_total_bytes,
            logged_messages,
        )
        self.plane.observers.append(logger.observe)
        return logger

    def _grpc_server(self) -> Any:
        """The gRPC server, or None (logged) when grpcio is missing."""
        config = self.config
        try:
            from fmnist.serving.server.api.grpc_api import GrpcApi
            from fmnist.serving.server.transport.grpc_server import GrpcServer
        except ImportError as err:
            log.warning("%s (missing: %s)", GRPC_NEEDS_GRPCIO, err.name or err)
            return None
        reload = config.server_processes == 1  # sibling processes would not follow a reload
        services = GrpcApi(self.plane, config.max_request_bytes, reload).services()
        if config.enable_profiler:
            services.update(_profiler_services(self.plane.placement))
        return GrpcServer(
            services,
            host=config.host,
            port=config.grpc_port,
            max_message_bytes=config.max_request_bytes,
            health_check=config.grpc_health,
            socket_path=config.grpc_socket_path,
            channel_arguments=config.grpc_channel_arguments,
            reuse_port=config.reuse_port,
        )

    def _rest_server(self) -> HttpServer | None:
        config = self.config
        if config.rest_port is None:
            return None
        return HttpServer(
            RestApi(self.plane).handle,
            host=config.host,
            port=config.rest_port,
            max_body_bytes=config.max_request_bytes,
            timeout_s=config.rest_timeout_ms / 1000,
            metrics=self.metrics,
            metrics_path=config.monitoring_path,
            reuse_port=config.reuse_port,
        )

    def start(self) -> None:
        config = self.config
        self.check_ports()
        self.request_log.start()
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
                why = ports.why_not(
                    config.host, config.rest_port, err, api="REST", flag="--rest_api_port"
                )
                raise UserError(why) from None
            log.info(
                "Exporting HTTP/REST API at:%s ...", ports.address(config.host, self.rest_port)
            )
        self.registry.start_polling(config.poll_wait_seconds)
        if config.config_file:
            self.registry.watch_config_file(
                config.config_file, config.config_poll_seconds, config.models
            )

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
        log.info(
            "Running gRPC ModelServer at %s ...", ports.address(self.config.host, self.grpc_port)
        )

    def check_ports(self) -> None:
        """Fail at once, before loading anything, if a configured address cannot be listened
        on (sibling processes share their ports: the first of them checked)."""
        config = self.config
        if not config.reuse_port:
            grpc_port = config.grpc_port if self.grpc is not None else None
            ports.check_ports(config.host, grpc_port, config.rest_port)

    def ports(self) -> tuple[int | None, int | None]:
        return self.grpc_port, self.rest_port

    def wait(self) -> None:
        self._stopped.wait()

    def stop(self) -> int:
        """Graceful stop (see the module docstring); a second call does nothing."""
        if self._stopping:
            return 0
        self._stopping = True
        grace = self.config.shutdown_grace_seconds
        grpc_stopped = None
        if self.grpc is not None:  # refuses new calls now, lets running ones finish
            grpc_stopped = self.grpc.stop(grace)
        if self.rest is not None:
            self.rest.stop(grace)
        if grpc_stopped is not None:
            grpc_stopped.result()
        self.request_log.stop()  # the answered requests' records written, files closed
        for pool in self.pools.values():
            pool.shutdown(wait=False, cancel_futures=True)
        self.registry.stop()
        self._stopped.set()
        return 0


def _profiler_services(placement: Any) -> dict:
    """TF's profiler service (--enable_profiler), or none (logged) without TensorFlow."""
    from fmnist.serving.server.api import profiler_api

    if not profiler_api.available():
        log.info("--enable_profiler: TensorFlow is not installed; no profiler service")
        return {}
    return profiler_api.ProfilerApi(placement).services()
