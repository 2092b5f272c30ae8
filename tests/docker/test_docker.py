"""What the pieces of `docker/` promise each other (ports, flags, paths, probes, configs), with
the image's CMD and `model_ready.sh` run against a real `fmnist serve`; their form is left to
hadolint, check-jsonschema (Compose spec), kubernetes-validate and Docker's own parser."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from string import Template

import dockerfile
import pytest
import yaml

from fmnist.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
BIN = Path(sys.executable).parent  # the dev extra's tools: hadolint, shellcheck
SERVING_DOCKERFILE = DOCKER / "serving" / "Dockerfile"
PARITY_DOCKERFILE = DOCKER / "parity" / "Dockerfile"
DOCKERFILES = sorted(DOCKER.rglob("Dockerfile"))
CONFIG_DIR = DOCKER / "serving" / "config"
MODEL_READY = DOCKER / "serving" / "model_ready.sh"
COMPOSE_FILE = DOCKER / "compose.yaml"
COMPOSE = yaml.safe_load(COMPOSE_FILE.read_text())
SERVING, PARITY = COMPOSE["services"]["serving"], COMPOSE["services"]["parity"]
K8S = {
    d["kind"]: d for p in (DOCKER / "k8s").glob("*.yaml") for d in yaml.safe_load_all(p.read_text())
}
POD = K8S["Deployment"]["spec"]["template"]
(CONTAINER,) = POD["spec"]["containers"]
MODEL_NAME, GRPC_PORT, REST_PORT = "fashion_mnist", 8500, 8501
PROBE = ["/usr/local/bin/model_ready.sh", MODEL_NAME, str(REST_PORT)]
SCRIPT_DEADLINE_S = 5  # model_ready.sh's own `timeout 5`: every probe must allow more


def commands(path: Path, keyword: str) -> list[dockerfile.Command]:
    return [c for c in dockerfile.parse_file(str(path)) if c.cmd.upper() == keyword]


def expand(path: Path, text: str) -> str:
    """`text` with the Dockerfile's ARG defaults substituted, as a plain `docker build` does."""
    defaults: dict[str, str] = {}
    for arg in commands(path, "ARG"):
        name, eq, default = arg.value[0].partition("=")
        if eq:
            defaults[name] = Template(default).safe_substitute(defaults)
    return Template(text).safe_substitute(defaults)


def copies(path: Path) -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY, ARG defaults expanded."""
    return [([expand(path, s) for s in c.value[:-1]], c.value[-1]) for c in commands(path, "COPY")]


def repo_file_at(image_path: str) -> Path | None:
    """The build-context file that a COPY of the serving image puts at `image_path`."""
    for sources, dest in copies(SERVING_DOCKERFILE):
        for source in map(REPO.joinpath, sources):
            if source.is_dir() and dest.endswith("/") and image_path.startswith(dest):
                return source / image_path[len(dest) :]
            if image_path == dest or (dest.endswith("/") and image_path == dest + source.name):
                return source
    return None


def serving_cmd() -> list[str]:
    (cmd,) = commands(SERVING_DOCKERFILE, "CMD")
    assert cmd.json, "exec form: no shell between the server and SIGTERM"
    return list(cmd.value)


def serve_args() -> argparse.Namespace:
    """The CMD as `fmnist serve` parses it: its flags mirror tensorflow_model_server's."""
    return build_parser().parse_args(["serve", *serving_cmd()])


def run(*command: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    argv = [str(c) for c in command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=REPO)


# --- validators (all offline: the schemas ship inside the packages) -------------------------
@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint(path: Path) -> None:
    result = run(BIN / "hadolint", "--no-color", "--failure-threshold", "info", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_follows_the_compose_spec() -> None:
    schema = ("--builtin-schema", "vendor.compose-spec")
    result = run(sys.executable, "-m", "check_jsonschema", *schema, COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("kind", ["Deployment", "Service", "HorizontalPodAutoscaler"])
def test_k8s_manifest_follows_the_kubernetes_schema(kind: str) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(K8S[kind], kubernetes_validate.latest_version(), strict=True)


def test_model_ready_passes_shellcheck() -> None:
    result = run(BIN / "shellcheck", "--severity=style", MODEL_READY)
    assert result.returncode == 0, result.stdout


# --- Dockerfiles -----------------------------------------------------------------------------
def test_serving_image_is_official_tf_serving_at_our_version() -> None:
    """The official binary, not the image's entrypoint script (it adds --model_name)."""
    (base,) = [expand(SERVING_DOCKERFILE, c.value[0]) for c in commands(SERVING_DOCKERFILE, "FROM")]
    image, _, tag = base.partition(":")
    assert image == "tensorflow/serving" and tag.replace(".", "").isdigit(), base  # X.Y.Z
    assert tag.split(".")[:2] == version("tensorflow-serving-api").split(".")[:2], tag
    (entrypoint,) = commands(SERVING_DOCKERFILE, "ENTRYPOINT")
    assert entrypoint.value == ("/usr/bin/tensorflow_model_server",)


def test_serving_image_exposes_and_listens_on_both_ports() -> None:
    exposed = {p.split("/")[0] for c in commands(SERVING_DOCKERFILE, "EXPOSE") for p in c.value}
    assert {str(GRPC_PORT), str(REST_PORT)} <= exposed
    assert (serve_args().port, serve_args().rest_api_port) == (GRPC_PORT, REST_PORT)


def test_serving_cmd_names_models_by_config_file_with_batching() -> None:
    args = serve_args()
    assert args.model_config_file and args.model_base_path is None
    assert args.enable_batching and args.batching_parameters_file


@pytest.mark.parametrize(
    "flag", ["model_config_file", "batching_parameters_file", "monitoring_config_file"]
)
def test_serving_config_flag_names_a_copied_file(flag: str) -> None:
    source = repo_file_at(getattr(serve_args(), flag))
    assert source is not None and source.is_file(), f"--{flag}: no COPY puts a file there"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.parent.name)
def test_copy_sources_are_in_the_build_context(path: Path) -> None:
    """Sources exist (but the exported model) and pass .dockerignore, by Docker's rules."""
    from docker.utils.build import PatternMatcher

    lines = map(str.strip, (REPO / ".dockerignore").read_text().splitlines())
    ignored = PatternMatcher([line for line in lines if line and line[0] != "#"])
    for source in (s.rstrip("/") for sources, _ in copies(path) for s in sources):
        assert not ignored.matches(source), f"{source} is .dockerignored"
        assert (REPO / source).exists() or source == expand(path, "$MODEL_DIR"), source


def test_model_ready_is_copied_executable() -> None:
    """compose and Kubernetes exec it directly: it needs its mode bit, in git too."""
    assert repo_file_at(PROBE[0]) == MODEL_READY and os.access(MODEL_READY, os.X_OK)
    assert run("git", "ls-files", "-s", MODEL_READY).stdout.split()[:1] in ([], ["100755"])


# --- server configs, as tensorflow_model_server reads them -----------------------------------
def test_models_config_serves_the_copied_model() -> None:
    from google.protobuf import text_format
    from tensorflow_serving.config.model_server_config_pb2 import ModelServerConfig

    config = text_format.Parse((CONFIG_DIR / "models.config").read_text(), ModelServerConfig())
    (model,) = config.model_config_list.config
    model_dir = expand(SERVING_DOCKERFILE, "$MODEL_DIR")
    (image_dir,) = [dest.rstrip("/") for s, dest in copies(SERVING_DOCKERFILE) if s == [model_dir]]
    assert (model.name, model.model_platform) == (MODEL_NAME, "tensorflow")
    assert model.base_path == image_dir


def test_batching_covers_the_batches_our_clients_send() -> None:
    """TF Serving rejects requests over max_batch_size: "Task size N is larger than ..."."""
    from fmnist.serving.client import GrpcClient, RestClient
    from fmnist.serving.server.core.config import read_batching_parameters_file

    limit = read_batching_parameters_file(str(CONFIG_DIR / "batching.config")).max_batch_size
    assert build_parser().parse_args(PARITY["command"]).batch_size <= limit
    for client in (GrpcClient("127.0.0.1:1", MODEL_NAME), RestClient("http://127.0.0.1:1", "m")):
        with client:  # connects lazily: nothing is sent
            assert client.batch_size <= limit, type(client).__name__


def test_monitoring_config_enables_the_scraped_metrics_path() -> None:
    from fmnist.serving.server.core.config import read_monitoring_config_file

    path = read_monitoring_config_file(CONFIG_DIR / "monitoring.config")
    assert path == POD["metadata"]["annotations"]["prometheus.io/path"]
    assert POD["metadata"]["annotations"]["prometheus.io/port"] == str(REST_PORT)


# --- compose ---------------------------------------------------------------------------------
def mounts(service: dict) -> dict[str, str]:
    """target -> source of the volumes (short syntax; a source may be `${VAR:?message}`)."""
    specs = (v.removesuffix(":ro").removesuffix(":rw") for v in service["volumes"])
    return {target: source for source, _, target in (s.rpartition(":") for s in specs)}


def test_compose_builds_serving_from_the_repo_root_with_the_export_layout() -> None:
    build = SERVING["build"]
    assert (COMPOSE_FILE.parent / build["context"]).resolve() == REPO  # COPY is repo-relative
    assert REPO / build["dockerfile"] == SERVING_DOCKERFILE
    assert Path(build["args"]["MODEL_DIR"]).name == MODEL_NAME  # <base path>/<model name>


def test_compose_publishes_both_ports_on_loopback() -> None:
    assert {f"127.0.0.1:{p}:{p}" for p in (GRPC_PORT, REST_PORT)} <= set(SERVING["ports"])


def test_compose_parity_job_waits_for_model_ready_in_the_healthcheck() -> None:
    assert PARITY["depends_on"]["serving"]["condition"] == "service_healthy"
    assert SERVING["healthcheck"]["test"] == ["CMD", *PROBE]
    assert int(SERVING["healthcheck"]["timeout"].rstrip("s")) > SCRIPT_DEADLINE_S


def test_compose_parity_command_parses_with_fmnist_parity() -> None:
    assert [c.value for c in commands(PARITY_DOCKERFILE, "ENTRYPOINT")] == [("fmnist",)]
    args = build_parser().parse_args(PARITY["command"])
    assert (args.command, args.model_name, args.wait > 0) == ("parity", MODEL_NAME, True)
    assert args.grpc == f"serving:{GRPC_PORT}"


def test_compose_parity_paths_are_mounted() -> None:
    args = build_parser().parse_args(PARITY["command"])
    for path in (args.bundle, args.data_dir, args.json.parent):
        assert any(path.is_relative_to(target) for target in mounts(PARITY)), path


def test_compose_parity_output_is_writable_by_the_job_user() -> None:
    """A named volume on a directory the image gave its user (not a root-owned bind mount)."""
    out = str(build_parser().parse_args(PARITY["command"]).json.parent)
    assert mounts(PARITY)[out] in COMPOSE["volumes"]
    (user,) = [c.value[0] for c in commands(PARITY_DOCKERFILE, "USER")]
    assert any(f"chown {user} {out}" in c.value[0] for c in commands(PARITY_DOCKERFILE, "RUN"))


# --- Kubernetes ------------------------------------------------------------------------------
def test_k8s_service_routes_both_ports_to_the_pods() -> None:
    service = K8S["Service"]["spec"]
    assert service["selector"].items() <= POD["metadata"]["labels"].items()
    named = {p["name"]: p["containerPort"] for p in CONTAINER["ports"]}
    routes = {p["port"]: named.get(p["targetPort"], p["targetPort"]) for p in service["ports"]}
    assert routes == {GRPC_PORT: GRPC_PORT, REST_PORT: REST_PORT}


@pytest.mark.parametrize("probe", ["startupProbe", "readinessProbe"])
def test_k8s_probe_runs_model_ready_with_time_for_its_deadline(probe: str) -> None:
    """Ready means a model version is AVAILABLE (model_ready.sh), not a bare HTTP 200."""
    assert CONTAINER[probe]["exec"]["command"] == PROBE
    assert CONTAINER[probe]["timeoutSeconds"] > SCRIPT_DEADLINE_S


def test_k8s_liveness_uses_the_grpc_health_service_the_cmd_enables() -> None:
    assert CONTAINER["livenessProbe"]["grpc"]["port"] == GRPC_PORT
    assert serve_args().enable_grpc_healthcheck_service is True


# --- the image's CMD and model_ready.sh against a real `fmnist serve` ------------------------
@pytest.fixture(scope="module")
def image_server(serving_fixtures: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """`fmnist serve` with the image's CMD and configs; only ports and base_path are local."""
    from google.protobuf import text_format
    from tensorflow_serving.config.model_server_config_pb2 import ModelServerConfig

    from fmnist.serving.server.process import start_server

    work = tmp_path_factory.mktemp("docker")
    models = text_format.Parse((CONFIG_DIR / "models.config").read_text(), ModelServerConfig())
    model = models.model_config_list.config[0]
    model.base_path = str(serving_fixtures / "saved_model_half_plus_two_2_versions")
    (work / "models.config").write_text(text_format.MessageToString(models))
    flags = [f.replace("=/config/", f"={CONFIG_DIR}/") for f in serving_cmd() if "port=" not in f]
    flags += ["--model_config_file", str(work / "models.config")]  # the last one counts
    server = start_server(*flags, log_dir=work / "logs")
    yield server
    assert server.stop() == 0, server.log()[-2000:]


def model_ready(*args: str | int, timeout: float = 20) -> int:
    """Exit code of model_ready.sh, exec'd with its arguments as compose and Kubernetes do."""
    return run(MODEL_READY, *map(str, args), timeout=timeout).returncode


@pytest.mark.parametrize(("model", "ready"), [(MODEL_NAME, True), ("no_such_model", False)])
def test_model_ready_on_the_image_server(image_server, model: str, ready: bool) -> None:
    assert (model_ready(model, image_server.rest_port) == 0) is ready


def answer(sock: socket.socket, state: str) -> None:
    """Answer one request with HTTP 200 and a TF Serving model status in `state`."""
    conn, _ = sock.accept()
    with conn:
        request = b""
        while b"\r\n\r\n" not in request:
            request += conn.recv(4096) or b"\r\n\r\n"
        status = f'{{\n "model_version_status": [{{"version": "1", "state": "{state}"}}]\n}}'
        conn.sendall(f"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{status}".encode())


@pytest.mark.parametrize("state", ["AVAILABLE", "LOADING", "END", "silent", "closed-port"])
def test_model_ready_needs_a_version_available(state: str) -> None:
    """Not any HTTP 200; a silent server fails at the script's deadline, not by a hang."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        if state != "closed-port":
            sock.listen()  # the kernel accepts connections from here on
        if state.isupper():  # a model state to answer with
            threading.Thread(target=answer, args=(sock, state), daemon=True).start()
        code = model_ready(MODEL_NAME, sock.getsockname()[1], timeout=SCRIPT_DEADLINE_S + 10)
    assert (code == 0) is (state == "AVAILABLE")
