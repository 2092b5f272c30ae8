"""`fmnist serve` (gRPC and REST) and the clients import without TensorFlow or TF Serving's
pip packages, so `--prefer_tflite_model` serves on a Raspberry Pi and a `[client]` install
queries any TF Serving; the REST side also imports without grpcio (32-bit Pi OS without
Debian's python3-grpcio). Only the SavedModel loader needs TensorFlow."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# Hidden top-level modules, as if they were not installed.
NO_TENSORFLOW = ("tensorflow", "tensorflow_serving", "keras", "grpc_health")
NO_GRPCIO = (*NO_TENSORFLOW, "grpc")


def _run(code: str, blocked: tuple[str, ...] = NO_TENSORFLOW) -> subprocess.CompletedProcess:
    blocker = f"""
import sys
class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {set(blocked)!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, _Blocker())
"""
    return subprocess.run(
        [sys.executable, "-c", blocker + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )


SERVER_MODULES = "".join(
    f"import fmnist.serving.server.{name}\n"
    for name in (
        "app",
        "cli",
        "api.rest_api",
        "api.logged_calls",
        "core.config",
        "core.data_plane",
        "core.registry",
        "core.request_log",
        "servables.batching",
        "servables.loader",
        "servables.tflite",
        "servables.warmup",
        "transport.http_server",
    )
)
GRPC_MODULES = (
    "import fmnist.serving.server.api.grpc_api, fmnist.serving.server.transport.grpc_server\n"
)


def test_server_modules_import_without_tensorflow() -> None:
    result = _run(SERVER_MODULES + GRPC_MODULES + "print('ok')")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"


def test_rest_side_imports_without_grpcio() -> None:
    result = _run(SERVER_MODULES + "print('ok')", NO_GRPCIO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"


def test_clients_and_the_cli_import_without_tensorflow() -> None:
    result = _run(
        """
        import fmnist.serving.client.grpc_client
        import fmnist.serving.client.parity
        import fmnist.serving.client.rest_client
        from fmnist.cli import build_parser
        build_parser()
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"


def test_saved_model_loader_without_tensorflow_is_one_line() -> None:
    result = _run(
        """
        from pathlib import Path
        from fmnist.serving.server.servables.loader import version_loader
        try:
            version_loader(True)(Path("/nonexistent/1"))
        except RuntimeError as err:
            print(err)
        """
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (line,) = result.stdout.splitlines()
    assert line.startswith("a SavedModel needs TensorFlow, which is not installed")
    assert "--prefer_tflite_model" in line
