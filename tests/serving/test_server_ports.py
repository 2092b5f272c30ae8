"""A port that is already taken fails `fmnist serve` at once, before any model loads, with one
line naming the port and the flag that sets it (exit 2)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("flag", "api", "other"),
    [("--port", "gRPC", "--rest_api_port"), ("--rest_api_port", "REST", "--port")],
)
def test_a_taken_port_fails_before_any_model_loads(
    flag: str, api: str, other: str, serving_fixtures: Path
):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                *(sys.executable, "-m", "fmnist.cli", "serve", "--host", "127.0.0.1"),
                *("--model_base_path", str(serving_fixtures / "saved_model_half_plus_two_cpu")),
                *(flag, str(port), other, "0"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
    assert result.returncode == 2, result.stderr
    # One line and nothing else: a model that loaded would have logged "version 123 available".
    assert result.stderr.strip().splitlines() == [
        f"fmnist serve: error: cannot listen for {api} on 127.0.0.1:{port}: port {port} is "
        f"already in use (choose another with {flag})"
    ]


def test_an_in_process_server_checks_its_ports_before_loading(serving_fixtures: Path):
    """`ModelServer.start` (used in-process, without the CLI's early check) checks too."""
    from fmnist.errors import UserError
    from fmnist.serving.server.app import ModelServer
    from fmnist.serving.server.core.config import ServerConfig, single_model

    models = single_model("half_plus_two", serving_fixtures / "saved_model_half_plus_two_cpu")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = ModelServer(ServerConfig(models=models, grpc_port=0, rest_port=port))
        with pytest.raises(UserError, match=f"port {port} is already in use .*--rest_api_port"):
            server.start()
    try:
        from fmnist.serving.wire.status import StatusError

        with pytest.raises(StatusError, match="Could not find any versions"):
            server.registry.status("half_plus_two")  # nothing was loaded
    finally:
        server.stop()


def test_a_host_that_does_not_resolve_names_the_host(serving_fixtures: Path):
    model = str(serving_fixtures / "saved_model_half_plus_two_cpu")
    flags = ("--host", "999.1.1.1", "--model_base_path", model, "--port", "0")
    result = subprocess.run(
        [sys.executable, "-m", "fmnist.cli", "serve", *flags],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(
        "fmnist serve: error: cannot listen for gRPC on 999.1.1.1: --host 999.1.1.1 is not an "
        "address or a host name that resolves"
    )
