"""`pip install "fmnist-deploy[client]"`: `fmnist predict`, `fmnist parity` and the error
messages work with no TensorFlow, over gRPC and REST, against a real `fmnist serve`.

The client commands run in the `[client]` environment named by $FMNIST_CLIENT_PYTHON
(`.ci/run` builds it); the server runs here, on the exported test bundle."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

CLIENT_PYTHON = "FMNIST_CLIENT_PYTHON"


@pytest.fixture(scope="module")
def client_python() -> str:
    python = os.environ.get(CLIENT_PYTHON)
    if not python:
        pytest.skip(f"{CLIENT_PYTHON} (a [client] install's python) is not set")
    probe = subprocess.run(
        [python, "-c", "import tensorflow"], capture_output=True, text=True, timeout=60
    )
    assert probe.returncode != 0, f"{python} has TensorFlow"
    return python


@pytest.fixture(scope="module")
def bundle_server(exported_bundle: Path, session_model_server):
    return session_model_server(
        *("--model_name", "fashion_mnist", "--model_base_path", str(exported_bundle.parent))
    )


def _fmnist(python: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [python, "-m", "fmnist.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONSAFEPATH": "1"},  # the clone's fmnist/ must not shadow it
    )


def _endpoints(server) -> list[list[str]]:
    return [["--grpc", server.grpc_target], ["--rest", server.rest_url]]


def test_help_lists_every_command(client_python: str) -> None:
    result = _fmnist(client_python, "--help")
    assert result.returncode == 0, result.stderr
    for command in ("train", "export", "serve", "predict", "parity", "pipeline"):
        assert command in result.stdout


@pytest.mark.parametrize("api", [0, 1], ids=["grpc", "rest"])
def test_parity_passes_without_tensorflow(
    client_python: str, bundle_server, exported_bundle: Path, data_dir: Path, tmp_path, api
) -> None:
    report = tmp_path / "parity.json"
    result = _fmnist(
        client_python,
        "parity",
        *_endpoints(bundle_server)[api],
        *("--model-name", "fashion_mnist", "--bundle", str(exported_bundle)),
        *("--data-dir", str(data_dir), "--json", str(report)),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    answer = json.loads(report.read_text())
    assert answer["passed"] and answer["agreement"] == 1.0


@pytest.mark.parametrize("api", [0, 1], ids=["grpc", "rest"])
def test_predict_classifies_image_files_without_tensorflow(
    client_python: str, bundle_server, data_dir: Path, tmp_path, api
) -> None:
    from fmnist import dataset

    test = dataset.load_test(data_dir)
    path = tmp_path / "images.npy"
    np.save(path, test.images[:3])
    result = _fmnist(
        client_python,
        "predict",
        *_endpoints(bundle_server)[api],
        *("--model-name", "fashion_mnist", "--json", str(path)),
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 3 and all(len(row["predictions"]) == 3 for row in rows)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--grpc", "127.0.0.1:1"], "could not reach TF Serving at 127.0.0.1:1 (gRPC"),
        (["--rest", "127.0.0.1:1"], "could not reach TF Serving at http://127.0.0.1:1 (REST"),
    ],
    ids=["grpc", "rest"],
)
def test_unreachable_server_is_one_line(client_python: str, tmp_path, flags, message) -> None:
    line = _predict_error(client_python, tmp_path, *flags, "--model-name", "m", "--timeout", "1")
    assert line.startswith("fmnist predict: error: ") and message in line


@pytest.mark.parametrize("api", [0, 1], ids=["grpc", "rest"])
def test_unknown_model_is_one_line(client_python: str, bundle_server, tmp_path, api) -> None:
    flags = _endpoints(bundle_server)[api]
    line = _predict_error(client_python, tmp_path, *flags, "--model-name", "nope")
    assert "NOT_FOUND" in line and "Servable not found for request: Latest(nope)" in line


def _predict_error(client_python: str, tmp_path: Path, *flags: str) -> str:
    """`fmnist predict` of one blank image, which must fail: its one line on stderr."""
    path = tmp_path / "image.npy"
    np.save(path, np.zeros((1, 28, 28), np.uint8))
    result = _fmnist(client_python, "predict", *flags, str(path))
    assert result.returncode != 0
    (line,) = result.stderr.strip().splitlines()
    return line


def test_server_commands_name_the_extra_they_need(client_python: str, tmp_path) -> None:
    result = _fmnist(client_python, "serve", "--model_base_path", str(tmp_path), "--port", "0")
    assert result.returncode != 0
    (line,) = result.stderr.strip().splitlines()
    assert "not installed" in line and "pip install 'fmnist-deploy[" in line
