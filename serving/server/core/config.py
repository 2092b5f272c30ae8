"""The model server's typed configuration, from TF Serving's flags and its text-format config
files (ModelServerConfig, MonitoringConfig, BatchingParameters), read here so that a bad
file is a one-line user error before anything loads.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fmnist.errors import UserError
from fmnist.serving.server.servables.batch_scheduler import BatchingConfig, check_config

DEFAULT_GRPC_PORT = 8500
DEFAULT_REST_PORT = 8501
DEFAULT_MAX_REQUEST_BYTES = 64 << 20
DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
DEFAULT_REQUEST_LOG_FILE_BYTES = 64 << 20
DEFAULT_REQUEST_LOG_TOTAL_BYTES = 1 << 30
# TF Serving's open-source build registers no log collector; ours writes TFRecord files.
LOG_COLLECTOR_TYPES = ("", "tfrecord")


@dataclass(frozen=True)
class VersionPolicy:
    """Which on-disk versions to serve: `latest {n}` (default 1), `all` or `specific`."""

    kind: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def select(self, on_disk: Iterable[int]) -> set[int]:
        on_disk = sorted(on_disk, reverse=True)
        if self.kind == "all":
            return set(on_disk)
        if self.kind == "specific":
            return set(on_disk) & set(self.versions)
        return set(on_disk[: max(self.num_versions, 1)])


@dataclass(frozen=True)
class RequestLogging:
    """A model's `logging_config`: the files its sampled requests go to, and the share of
    requests logged (0 to 1)."""

    filename_prefix: str
    sampling_rate: float


@dataclass(frozen=True)
class ModelConfig:
    """One served model: a name and a base path holding integer-named version directories."""

    name: str
    base_path: Path
    policy: VersionPolicy = VersionPolicy()
    labels: Mapping[str, int] = field(default_factory=dict)
    logging: RequestLogging | None = None  # None: its requests are not logged


@dataclass(frozen=True)
class ServerConfig:
    """Everything `fmnist serve` needs; the defaults are TF Serving's where it has one."""

    models: tuple[ModelConfig, ...]
    host: str = "127.0.0.1"
    grpc_port: int = DEFAULT_GRPC_PORT  # 0: any free port (printed on start)
    rest_port: int | None = DEFAULT_REST_PORT  # None: REST disabled; 0: any free port
    poll_wait_seconds: float = 1.0  # <= 0: read the base paths once, at start
    monitoring_path: str | None = None  # Prometheus endpoint on the REST port
    grpc_health: bool = False
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    rest_timeout_ms: int = 30_000
    rest_threads: int = 4 * (os.cpu_count() or 1)
    grpc_threads: int = 4 * (os.cpu_count() or 1)
    method_name_check: bool = False  # TF Serving's --enable_signature_method_name_check
    shutdown_grace_seconds: float = 30.0
    model_warmup: bool = True  # TF Serving's --enable_model_warmup
    config_file: str | None = None  # the --model_config_file, re-read every config_poll_seconds
    config_poll_seconds: float = 0.0  # --model_config_file_poll_wait_seconds; 0: never
    grpc_socket_path: str | None = None  # TF Serving's --grpc_socket_path: also gRPC on unix:PATH
    grpc_channel_arguments: tuple[tuple[str, int | str], ...] = ()  # --grpc_channel_arguments
    batching: BatchingConfig | None = None  # --enable_batching; None: every request runs alone
    prefer_tflite_model: bool = False  # --prefer_tflite_model: serve model.tflite if present
    enable_profiler: bool = True  # --enable_profiler: TF's profiler service on the gRPC port
    server_processes: int = 1  # --server_processes: processes sharing the ports (workers.py)
    reuse_port: bool = False  # set in those processes: they bind the ports with SO_REUSEPORT
    tf_intra_op_threads: int = 0  # --tensorflow_intra_op_parallelism; 0: TensorFlow's choice
    tf_inter_op_threads: int = 0  # --tensorflow_inter_op_parallelism; 0: TensorFlow's choice
    log_level: str = "info"  # --log_level: debug, info, warning or error
    log_format: str = "text"  # --log_format: TF Serving's lines (text) or JSON lines
    request_log_file_bytes: int = DEFAULT_REQUEST_LOG_FILE_BYTES  # a log file rotates past it
    request_log_total_bytes: int = DEFAULT_REQUEST_LOG_TOTAL_BYTES  # a prefix's files, at most


def read_batching_parameters_file(path: str | None) -> BatchingConfig:
    """A text-format BatchingParameters file (None: TF Serving's defaults). Unset fields
    keep the defaults of TF Serving's SharedBatchScheduler (bundle_factory_util.h sets
    only the wrapper fields that are present); a bad file or value is a UserError."""
    if path is None:
        return BatchingConfig()
    from fmnist.serving.wire.messages import BatchingParameters

    proto = BatchingParameters()
    _parse_text(path, proto, "batching parameters file")
    values = {
        name: getattr(proto, name).value
        for name in (
            "max_batch_size",
            "batch_timeout_micros",
            "max_enqueued_batches",
            "num_batch_threads",
            "enable_large_batch_splitting",
            "max_execution_batch_size",
        )
        if proto.HasField(name)
    }
    if values.get("enable_large_batch_splitting") and "max_execution_batch_size" not in values:
        # TF Serving's GetQueueOptions: splitting without a limit executes max_batch_size.
        values["max_execution_batch_size"] = values.get("max_batch_size", 1000)
    config = BatchingConfig(
        **values,
        allowed_batch_sizes=tuple(proto.allowed_batch_sizes),
        pad_variable_length_inputs=proto.pad_variable_length_inputs,
    )
    try:
        check_config(config)
    except ValueError as err:
        raise UserError(f"invalid batching parameters file '{path}': {err}") from None
    return config


def parse_grpc_channel_arguments(text: str) -> tuple[tuple[str, int | str], ...]:
    """TF Serving's `--grpc_channel_arguments`: comma-separated `key=value` pairs for the gRPC
    server; a value that parses as a 32-bit int is passed as an int, any other as a string."""
    arguments = []
    for item in text.split(","):
        if not item.strip():
            continue  # TF Serving's splitter skips empty pieces ("a=1,,b=2", a trailing comma)
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or "=" in value:
            raise UserError(
                f"--grpc_channel_arguments: expected key=value, got {item!r} "
                "(e.g. grpc.max_concurrent_streams=100,grpc.max_connection_age_ms=60000)"
            )
        arguments.append((key, _int32_or_text(value.strip())))
    return tuple(arguments)


def _int32_or_text(value: str) -> int | str:
    try:
        number = int(value)
    except ValueError:
        return value
    return number if -(2**31) <= number < 2**31 else value


def single_model(name: str, base_path: str | os.PathLike) -> tuple[ModelConfig, ...]:
    """The `--model_name/--model_base_path` form: one model, latest version."""
    path = Path(base_path).absolute()
    if not path.is_dir():
        raise UserError(f"model base path {base_path} is not a directory")
    return (ModelConfig(name=name, base_path=path),)


def read_model_config_file(path: str | os.PathLike) -> tuple[ModelConfig, ...]:
    """Models from a text-format ModelServerConfig (`model_config_list { config {...} }`)."""
    from fmnist.serving.wire.messages import ModelServerConfig

    config = ModelServerConfig()
    _parse_text(path, config, "model config file")
    return models_from_proto(config, str(path))


def models_from_proto(config, path: str) -> tuple[ModelConfig, ...]:
    """The models of a ModelServerConfig message; `path` names its source in errors."""
    if config.WhichOneof("config") != "model_config_list":
        raise UserError(f"{path}: only model_config_list is supported")
    models, names = [], set()
    for entry in config.model_config_list.config:
        where = f"{path}: model '{entry.name}'"
        if not entry.name:
            raise UserError(f"{path}: every model needs a name")
        if entry.name in names:
            raise UserError(f"{where} is configured twice")
        names.add(entry.name)
        if entry.model_platform not in ("", "tensorflow"):
            raise UserError(f"{where}: model_platform '{entry.model_platform}' is not supported")
        if not entry.base_path:
            raise UserError(f"{where} has no base_path")
        base_path = Path(entry.base_path).absolute()
        if not base_path.is_dir():
            raise UserError(f"{where}: base path {entry.base_path} is not a directory")
        models.append(
            ModelConfig(
                name=entry.name,
                base_path=base_path,
                policy=_policy(entry.model_version_policy),
                labels=dict(entry.version_labels),
                logging=_request_logging(entry, where),
            )
        )
    if not models:
        raise UserError(f"{path} configures no models")
    return tuple(models)


def _policy(proto) -> VersionPolicy:
    choice = proto.WhichOneof("policy_choice")
    if choice == "all":
        return VersionPolicy(kind="all")
    if choice == "specific":
        return VersionPolicy(kind="specific", versions=tuple(proto.specific.versions))
    if choice == "latest":
        return VersionPolicy(num_versions=max(proto.latest.num_versions, 1))
    return VersionPolicy()


def _request_logging(entry, where: str) -> RequestLogging | None:
    """A model's `logging_config`, checked: a known collector type, a prefix in a directory
    that exists, a sampling rate in [0, 1]."""
    if not entry.HasField("logging_config"):
        return None
    collector = entry.logging_config.log_collector_config
    rate = entry.logging_config.sampling_config.sampling_rate
    if collector.type not in LOG_COLLECTOR_TYPES:
        raise UserError(
            f"{where}: log collector type '{collector.type}' is not supported "
            '(use "tfrecord", or leave it empty)'
        )
    if not collector.filename_prefix:
        raise UserError(f"{where}: logging_config needs log_collector_config.filename_prefix")
    if not 0.0 <= rate <= 1.0:  # NaN too
        raise UserError(f"{where}: sampling_rate {rate} is not between 0 and 1")
    # Relative to where the server starts, as base paths; a trailing / is kept (files in it).
    prefix = os.path.join(os.getcwd(), collector.filename_prefix)
    directory = os.path.dirname(prefix)
    if not os.path.isdir(directory):
        raise UserError(
            f"{where}: log filename_prefix {collector.filename_prefix}: "
            f"directory {directory} does not exist"
        )
    return RequestLogging(prefix, rate)


def read_monitoring_config_file(path: str | os.PathLike) -> str | None:
    """The Prometheus path a MonitoringConfig enables, or None if it leaves Prometheus off."""
    from fmnist.serving.wire.messages import MonitoringConfig

    config = MonitoringConfig()
    _parse_text(path, config, "monitoring config file")
    prometheus = config.prometheus_config
    if not prometheus.enable:
        return None
    metrics_path = prometheus.path or DEFAULT_PROMETHEUS_PATH
    if not metrics_path.startswith("/"):
        raise UserError(f"{path}: prometheus path must start with '/'")
    return metrics_path


def _parse_text(path: str | os.PathLike, message, what: str) -> None:
    from google.protobuf import text_format

    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read {what} {path}: {err}") from None
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as err:
        # Worded as TF Serving's protobuf parser logs it, since scripts grep for that prefix.
        line, column = err.GetLine(), err.GetColumn()
        where = f"{line}:{column}: " if line is not None else ""
        reason = str(err).split(" : ", 1)[-1] if where else str(err)
        raise UserError(
            f"Error parsing text-format {message.DESCRIPTOR.full_name}: {where}{reason} "
            f"(invalid {what}: '{path}')"
        ) from None
