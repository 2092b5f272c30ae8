"""Subcommands of this stage (registered on the `fmnist` command): `fmnist serve`.

`serve` takes tensorflow_model_server's own flag names for what it supports, so a
command line written for TF Serving runs here unchanged (and an unsupported flag is an
error naming it, never silently ignored).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from functools import partial

from fmnist.errors import UserError
from fmnist.serving.server.logs import FORMATS, LEVELS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this stage's subcommand, `serve`, to the `fmnist` parser."""
    serve = subparsers.add_parser(
        "serve",
        allow_abbrev=False,
        formatter_class=_Help,
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
    --server_processes (docs/serving.md#flags describes each flag)."""
    arg("--port", type=_port, default=8500, metavar="PORT", help="gRPC port; 0 or auto: any free")
    rest = "REST; 0 disables it, auto: free"
    arg("--rest_api_port", type=_port, default=8501, metavar="PORT", help=rest)
    arg("--host", default="127.0.0.1", help="address to listen on")
    _boolean(arg, "--enable_grpc_healthcheck_service", False, "serve gRPC's health service")
    timeout = "--rest_api_timeout_in_ms"
    arg(timeout, type=_positive, default=30_000, metavar="MS", help="REST timeout")
    arg("--rest_api_num_threads", type=_positive, metavar="N", help="REST threads (4 per CPU)")
    arg("--grpc_max_threads", type=_positive, metavar="N", help="gRPC threads (4 per CPU)")
    limit = "largest gRPC message or REST body; larger: RESOURCE_EXHAUSTED, HTTP 413"
    arg("--max_request_bytes", type=_positive, default=64 << 20, metavar="BYTES", help=limit)
    arg("--grpc_socket_path", metavar="PATH", help="also serve gRPC on this UNIX domain socket")
    options = "gRPC server options, e.g. grpc.max_concurrent_streams=100"
    arg("--grpc_channel_arguments", default="", metavar="K=V,...", help=options)
    processes = "processes sharing the ports (SO_REUSEPORT), a copy of the models each"
    arg("--server_processes", type=_positive, default=1, metavar="N", help=processes)


def _add_models_flags(arg: Callable[..., object]) -> None:
    """Which models it serves and how versions load, poll, warm up and report metrics."""
    arg("--model_name", default="default", help="model name (without --model_config_file)")
    arg("--model_base_path", metavar="DIR", help="directory of integer-named versions")
    arg("--model_config_file", metavar="FILE", help="text-format ModelServerConfig: models")
    poll = "seconds between polls of the base paths; 0: once, at start"
    arg("--file_system_poll_wait_seconds", type=_seconds, default=1.0, metavar="S", help=poll)
    prometheus = "text-format MonitoringConfig: Prometheus metrics on the REST port"
    arg("--monitoring_config_file", metavar="FILE", help=prometheus)
    _boolean(arg, "--enable_signature_method_name_check", False, "check Classify/Regress methods")
    reread = "seconds between re-reads of --model_config_file; 0: never"
    flag = "--model_config_file_poll_wait_seconds"
    arg(flag, type=_seconds, default=0.0, metavar="S", help=reread)
    _boolean(arg, "--enable_model_warmup", True, "replay a version's warm-up requests first")
    _boolean(arg, "--prefer_tflite_model", False, "serve model.tflite (no TensorFlow needed)")


def _add_runtime_flags(arg: Callable[..., object]) -> None:
    """How a model runs: TensorFlow's thread pools, request batching, the profiler."""
    for scope, what in (("intra", "threads one op may use"), ("inter", "ops run at once")):
        flag, help = f"--tensorflow_{scope}_op_parallelism", f"SavedModel {what}; 0: TF's choice"
        arg(flag, type=_threads, default=0, metavar="N", help=help)
    _boolean(arg, "--enable_batching", False, "merge concurrent Predicts into shared runs")
    arg("--batching_parameters_file", metavar="FILE", help="text-format BatchingParameters")
    _boolean(arg, "--enable_profiler", True, "TensorFlow's profiler service on the gRPC port")


def _add_logging_flags(arg: Callable[..., object]) -> None:
    """What the server logs, and in which format."""
    arg("--log_level", choices=LEVELS, default="info", help="the least severe lines logged")
    arg("--log_format", choices=FORMATS, default="text", help="text: TF Serving's lines")
    size = "request log (logging_config): a file rotates past BYTES"
    arg("--request_log_file_bytes", type=_positive, default=64 << 20, metavar="BYTES", help=size)
    total = "request log: a prefix's files kept, oldest deleted beyond BYTES"
    arg("--request_log_total_bytes", type=_positive, default=1 << 30, metavar="BYTES", help=total)


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults in --help, where a flag has one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, ""):
            return action.help
        return super()._get_help_string(action)


def _boolean(arg: Callable[..., object], flag: str, default: bool, help: str) -> None:
    """A flag that takes true/false (or nothing: true), as TF Serving's boolean flags."""
    arg(flag, type=_bool, nargs="?", const=True, default=default, metavar="BOOL", help=help)


def _ports(args: argparse.Namespace) -> tuple[int, int | None]:
    """(gRPC port, REST port or None when disabled); 0 asks the OS for a free port."""
    rest_port = None if args.rest_api_port == 0 else max(args.rest_api_port, 0)
    grpc_port = max(args.port, 0)
    if rest_port and rest_port == grpc_port:
        raise UserError(f"--port and --rest_api_port are both {grpc_port}")
    return grpc_port, rest_port


def _check_ports(args: argparse.Namespace) -> None:
    """A bad address fails in a fraction of a second, before TensorFlow is even imported
    (the server checks again before loading models, and binds after)."""
    from fmnist.serving.server.transport import ports

    ports.check_ports(args.host, *_ports(args))


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
    "request_log_file_bytes": "request_log_file_bytes",
    "request_log_total_bytes": "request_log_total_bytes",
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
    if args.batching_parameters_file and not args.enable_batching:
        # TF Serving's own refusal (server.cc), so a command line behaves the same in both.
        raise UserError(
            "--batching_parameters_file is set without setting --enable_batching to true"
        )
    batching = None
    if args.enable_batching:
        batching = sc.read_batching_parameters_file(args.batching_parameters_file)
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
        **({"grpc_threads": args.grpc_max_threads} if args.grpc_max_threads else {}),
    )


def _port(text: str) -> int:
    """A TCP port; 'auto' (-1 internally) asks the OS for a free one."""
    if text == "auto":
        return -1
    return _whole_number(text, 0, 65535)


def _bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes", "false", "0", "no"):
        return text.lower() in ("true", "1", "yes")
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds: {text!r}")
    return value


def _whole_number(text: str, least: int, most: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < least or (most is not None and value > most):
        limits = f"at least {least}" if most is None else f"between {least} and {most}"
        raise argparse.ArgumentTypeError(f"must be {limits}: {value}")
    return value


MAX_TF_THREADS = 1024  # bounds a typo (TensorFlow would try to start every thread asked for)
_positive = partial(_whole_number, least=1)
_threads = partial(_whole_number, least=0, most=MAX_TF_THREADS)
