"""The REST side of `fmnist serve` imports without TensorFlow, TF Serving's protos, gRPC or
protobuf (a tflite-runtime install has none of them), so `--prefer_tflite_model` can serve
on a Raspberry Pi; the gRPC side and the SavedModel loader are the only parts that need TF."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# Hides these top-level modules, as if they were not installed.
BLOCKED = ("tensorflow", "tensorflow_serving", "grpc", "grpc_health", "google", "keras")
BLOCKER = f"""
import sys
class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {set(BLOCKED)!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, _Blocker())
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_rest_server_modules_import_without_tensorflow() -> None:
    result = _run(
        """
        import fmnist.serving.server.app
        import fmnist.serving.server.config
        import fmnist.serving.server.http_server
        import fmnist.serving.server.registry
        import fmnist.serving.server.rest_api
        import fmnist.serving.server.rest_json
        import fmnist.serving.server.tflite_model
        import fmnist.serving.server.warmup
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"


def test_saved_model_loader_without_tensorflow_is_one_line() -> None:
    result = _run(
        """
        from pathlib import Path
        from fmnist.serving.server.app import version_loader
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
