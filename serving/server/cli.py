"""Subcommands of this stage (registered on the `fmnist` command): `fmnist serve`.

`serve` takes tensorflow_model_server's own flag names for what it supports, so a
command line written for TF Serving runs here unchanged (and an unsupported flag is an
error naming it, never silently ignored).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from fmnist.errors import UserError
from fmnist.serving.server.logs import FORMATS, LEVELS

_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands to the `fmnist` parser."""
    _register_serve(subparsers)


def _register_serve(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve",
        allow_abbrev=False,
        help="serve SavedModels over TF Serving's gRPC and REST APIs",
        description="A TF Serving-compatible model server (gRPC PredictionService/ModelService "
        "and the REST API) for development, CI and boards without tensorflow_model_server. "
        "Flags use tensorflow_model_server's names. Prints the bound ports once serving; "
        "stops gracefully on SIGTERM.",
    )
    for title, add_flags in (
        ("listening", _add_transport_flags),
        ("models", _add_models_flags),
        ("running the models", _add_runtime_flags),
        ("logging", _add_logging_flags),
    ):
        add_flags(serve.add_argument_group(title).add_argument)
    serve.set_defaults(handler=_serve, precheck=_check_ports)


def _add_transport_flags(arg: Callable[..., object]) -> None:
    """Where and how it listens: TF Serving's port, thread and limit flags, plus --host and
    --server_processes."""
    arg(
        "--port",
        type=_port,
        default=8500,
        metavar="PORT",
        help="gRPC port (default 8500); 0 or 'auto' picks a free port",
    )
    arg(
        "--rest_api_port",
        type=_port,
        default=8501,
        metavar="PORT",
        help="REST port (default 8501); 0 disables REST, as in TF Serving; 'auto' picks a "
        "free port",
    )
    arg("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    arg(
        "--enable_grpc_healthcheck_service",
        type=_bool,
        nargs="?",
        const=True,
        default=False,
        metavar="BOOL",
        help="serve the standard gRPC health service",
    )
    arg(
        "--rest_api_timeout_in_ms",
        type=_positive_int,
        default=30_000,
        metavar="MS",
        help="REST request timeout (default 30000)",
    )
    arg(
        "--rest_api_num_threads",
        type=_positive_int,
        metavar="N",
        help="REST worker threads (default 4 per CPU)",
    )
    arg(
        "--grpc_max_threads",
        type=_positive_int,
        metavar="N",
        help="gRPC worker threads (default 4 per CPU)",
    )
    arg(
        "--max_request_bytes",
        type=_positive_int,
        default=64 << 20,
        metavar="BYTES",
        help="largest accepted request: gRPC message or REST body (default 64 MiB); larger "
        "ones get RESOURCE_EXHAUSTED / HTTP 413",
    )
    arg(
        "--grpc_socket_path",
        metavar="PATH",
        help="also serve gRPC on this UNIX domain socket (relative or absolute path), as "
        "TF Serving does",
    )
    arg(
        "--grpc_channel_arguments",
        default="",
        metavar="K=V,...",
        help="gRPC server channel arguments, comma-separated key=value (ints where they "
        "parse as int), e.g. grpc.max_concurrent_streams=100",
    )
    arg(
        "--server_processes",
        type=_positive_int,
        default=1,
        metavar="N",
        help="serve from N processes sharing the ports (SO_REUSEPORT), each with its own copy "
        "of the models: Python runs one core per process, and the kernel spreads client "
        "connections across them (default 1; gRPC config reloads need 1)",
    )


def _add_models_flags(arg: Callable[..., object]) -> None:
    """Which models it serves and how versions load, poll, warm up and report metrics."""
    arg("--model_name", default="default", help="model name (ignored with --model_config_file)")
    arg(
        "--model_base_path",
        metavar="DIR",
        help="directory of integer-named SavedModel versions (ignored with --model_config_file)",
    )
    arg(
        "--model_config_file",
        metavar="FILE",
        help="text-format ModelServerConfig: several models, version policies, version labels",
    )
    arg(
        "--file_system_poll_wait_seconds",
        type=_seconds,
        default=1.0,
        metavar="S",
        help="seconds between polls of the base paths for new versions (default 1); 0 reads "
        "them once at start",
    )
    arg(
        "--monitoring_config_file",
        metavar="FILE",
        help="text-format MonitoringConfig; enables Prometheus metrics on the REST port",
    )
    arg(
        "--enable_signature_method_name_check",
        type=_bool,
        nargs="?",
        const=True,
        default=False,
        metavar="BOOL",
        help="require classify/regress method names on Classify/Regress "
        "signatures (off by default, as in TF Serving)",
    )
    arg(
        "--model_config_file_poll_wait_seconds",
        type=_seconds,
        default=0.0,
        metavar="S",
        help="seconds between re-reads of --model_config_file (models added/removed, policies "
        "and labels changed); 0 (default) reads it once",
    )
    arg(
        "--enable_model_warmup",
        type=_bool,
        nargs="?",
        const=True,
        default=True,
        metavar="BOOL",
        help="replay a version's assets.extra/tf_serving_warmup_requests before it becomes "
        "AVAILABLE; a bad file fails the version's load (default true, as in TF Serving)",
    )
    arg(
        "--prefer_tflite_model",
        type=_bool,
        nargs="?",
        const=True,
        default=False,
        metavar="BOOL",
        help="serve a version directory's model.tflite instead of its SavedModel; works "
        "without TensorFlow (REST) on an [edge] install",
    )


def _add_runtime_flags(arg: Callable[..., object]) -> None:
    """How a model runs: TensorFlow's thread pools, request batching, the profiler."""
    arg(
        "--tensorflow_intra_op_parallelism",
        type=_thread_pool_size,
        default=0,
        metavar="N",
        help="threads one SavedModel op may use; 0 (default) lets TensorFlow choose (one per "
        "core), as in TF Serving. 1 suits small models under concurrent load",
    )
    arg(
        "--tensorflow_inter_op_parallelism",
        type=_thread_pool_size,
        default=0,
        metavar="N",
        help="SavedModel ops run at once; 0 (default) lets TensorFlow choose, as in TF Serving. "
        "With 1, a run stays on the thread that asked for it",
    )
    arg(
        "--enable_batching",
        type=_bool,
        nargs="?",
        const=True,
        default=False,
        metavar="BOOL",
        help="merge concurrent Predict requests into shared model runs (TF Serving's "
        "batching; parameters from --batching_parameters_file)",
    )
    arg(
        "--batching_parameters_file",
        metavar="FILE",
        help="text-format BatchingParameters (max_batch_size, batch_timeout_micros, "
        "max_enqueued_batches, num_batch_threads, allowed_batch_sizes, ...); needs "
        "--enable_batching, as in TF Serving",
    )
    arg(
        "--enable_profiler",
        type=_bool,
        nargs="?",
        const=True,
        default=True,
        metavar="BOOL",
        help="serve TensorFlow's profiler service on the gRPC port, for TensorBoard's "
        "'Capture profile' (default true, as in TF Serving; needs TensorFlow)",
    )


def _add_logging_flags(arg: Callable[..., object]) -> None:
    """What the server logs, and in which format."""
    arg(
        "--log_level",
        choices=LEVELS,
        default="info",
        help="the least severe log lines printed (default info)",
    )
    arg(
        "--log_format",
        choices=FORMATS,
        default="text",
        help="text (default): TF Serving's log lines, which readiness scripts wait for; json: "
        "one JSON object a line, for log shippers",
    )


def _ports(args: argparse.Namespace) -> tuple[int, int | None]:
    """(gRPC port, REST port or None when disabled); 0 asks the OS for a free port."""
    rest_port = None if args.rest_api_port == 0 else max(args.rest_api_port, 0)
    grpc_port = max(args.port, 0)
    if rest_port and rest_port == grpc_port:
        raise UserError(f"--port and --rest_api_port are both {grpc_port}")
    return grpc_port, rest_port


def _check_ports(args: argparse.Namespace) -> None:
    """A taken port fails in a fraction of a second, before TensorFlow is even imported
    (the server checks again before loading models, and binds after)."""
    from fmnist.serving.server.transport import ports

    grpc_port, rest_port = _ports(args)
    ports.check_free(args.host, grpc_port, api="gRPC", flag="--port")
    if rest_port is not None:
        ports.check_free(args.host, rest_port, api="REST", flag="--rest_api_port")


def _serve(args: argparse.Namespace) -> int:
    from fmnist.serving.server import app

    config = _server_config(args)
    if config.server_processes > 1:
        from fmnist.serving.server.workers import ProcessGroup

        return app.run(config, ProcessGroup)
    return app.run(config)


# ServerConfig fields that take a flag's value as it is.
_FIELD_OF_FLAG = {
    "host": "host",
    "file_system_poll_wait_seconds": "poll_wait_seconds",
    "enable_grpc_healthcheck_service": "grpc_health",
    "max_request_bytes": "max_request_bytes",
    "rest_api_timeout_in_ms": "rest_timeout_ms",
    "enable_signature_method_name_check": "method_name_check",
    "enable_model_warmup": "model_warmup",
    "model_config_file": "config_file",
    "model_config_file_poll_wait_seconds": "config_poll_seconds",
    "prefer_tflite_model": "prefer_tflite_model",
    "enable_profiler": "enable_profiler",
    "server_processes": "server_processes",
    "tensorflow_intra_op_parallelism": "tf_intra_op_threads",
    "tensorflow_inter_op_parallelism": "tf_inter_op_threads",
    "log_level": "log_level",
    "log_format": "log_format",
}


def _server_config(args: argparse.Namespace):
    """The flags as a ServerConfig; files they name are read (a bad one: UserError)."""
    from fmnist.serving.server.core import config as sc

    channel_arguments = sc.parse_grpc_channel_arguments(args.grpc_channel_arguments)
    if args.model_config_file:
        models = sc.read_model_config_file(args.model_config_file)
    elif args.model_base_path:
        models = sc.single_model(args.model_name, args.model_base_path)
    else:
        raise UserError("either --model_base_path or --model_config_file is required")
    grpc_port, rest_port = _ports(args)
    batching, grpc_threads = _batching(args, sc)
    monitoring_path = None
    if args.monitoring_config_file:
        monitoring_path = sc.read_monitoring_config_file(args.monitoring_config_file)
        if monitoring_path and rest_port is None:
            raise UserError("Prometheus metrics are served on the REST port: set --rest_api_port")
    return sc.ServerConfig(
        models=models,
        grpc_port=grpc_port,
        rest_port=rest_port,
        monitoring_path=monitoring_path,
        grpc_socket_path=args.grpc_socket_path or None,
        grpc_channel_arguments=channel_arguments,
        batching=batching,
        **{field: getattr(args, flag) for flag, field in _FIELD_OF_FLAG.items()},
        **({"rest_threads": args.rest_api_num_threads} if args.rest_api_num_threads else {}),
        **({"grpc_threads": grpc_threads} if grpc_threads else {}),
    )


def _batching(args: argparse.Namespace, sc) -> tuple[object, int | None]:
    """(--enable_batching's parameters or None, the gRPC thread count to use)."""
    if args.batching_parameters_file and not args.enable_batching:
        # TF Serving's own refusal (server.cc), so a command line behaves the same in both.
        raise UserError(
            "--batching_parameters_file is set without setting --enable_batching to true"
        )
    if not args.enable_batching:
        return None, args.grpc_max_threads
    batching = sc.read_batching_parameters_file(args.batching_parameters_file)
    if args.grpc_max_threads is not None:
        return batching, args.grpc_max_threads
    # A batch can only hold requests that are in flight: let enough of them in (TF Serving's
    # batching guide suggests about twice max_batch_size client threads).
    return batching, max(sc.ServerConfig.grpc_threads, min(2 * batching.max_batch_size, 64))


def _port(text: str) -> int:
    """A TCP port; 'auto' (-1 internally) asks the OS for a free one."""
    if text == "auto":
        return -1
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {port}")
    return port


def _bool(text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds: {text!r}")
    return value


MAX_TF_THREADS = 1024  # bounds a typo (TensorFlow would try to start every thread asked for)


def _thread_pool_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value <= MAX_TF_THREADS:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_TF_THREADS}: {value}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value}")
    return value
