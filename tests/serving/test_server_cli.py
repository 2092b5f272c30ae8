"""`fmnist serve` as a drop-in for tensorflow_model_server's command line: flags, errors, ports."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

SERVE = (sys.executable, "-m", "fmnist.cli", "serve")
TF_SERVING_FLAGS = (
    "--port",
    "--rest_api_port",
    "--model_name",
    "--model_base_path",
    "--model_config_file",
    "--file_system_poll_wait_seconds",
    "--monitoring_config_file",
    "--enable_grpc_healthcheck_service",
    "--rest_api_timeout_in_ms",
    "--host",
    "--max_request_bytes",
    "--enable_model_warmup",
    "--grpc_socket_path",
    "--grpc_channel_arguments",
    "--model_config_file_poll_wait_seconds",
    "--enable_batching",
    "--batching_parameters_file",
    "--prefer_tflite_model",
    "--tensorflow_intra_op_parallelism",
    "--tensorflow_inter_op_parallelism",
)


def serve(*flags: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SERVE, *flags], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def test_help_lists_the_tf_serving_flags():
    result = serve("--help")
    assert result.returncode == 0
    for flag in TF_SERVING_FLAGS:
        assert flag in result.stdout


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (("--per_process_gpu_memory_fraction", "0.5"), "--per_process_gpu_memory_fraction"),
        (("--model_base", "/tmp"), "--model_base"),  # no abbreviation of --model_base_path
        (("--port", "http"), "--port"),
        (("--enable_grpc_healthcheck_service=maybe",), "--enable_grpc_healthcheck_service"),
        (("--file_system_poll_wait_seconds", "nan"), "--file_system_poll_wait_seconds"),
        (("--file_system_poll_wait_seconds", "inf"), "--file_system_poll_wait_seconds"),
        (("--enable_model_warmup=sometimes",), "--enable_model_warmup"),
        (("--tensorflow_intra_op_parallelism", "-1"), "--tensorflow_intra_op_parallelism"),
        (("--tensorflow_inter_op_parallelism", "1e9"), "--tensorflow_inter_op_parallelism"),
        (("--tensorflow_inter_op_parallelism", "100000"), "--tensorflow_inter_op_parallelism"),
        (("--server_processes", "0"), "--server_processes"),
        # TF Serving refuses a batching file without --enable_batching; so do we.
        (
            ("--model_base_path", "/tmp", "--batching_parameters_file", "/tmp/b"),
            "without setting --enable_batching",
        ),
    ],
)
def test_an_unsupported_or_bad_flag_is_an_error_naming_it(flags, named):
    result = serve(*flags)
    assert result.returncode == 2
    assert named in result.stderr
    assert "Traceback" not in result.stderr


def _one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [
        line for line in result.stderr.splitlines() if line.startswith("fmnist serve: error:")
    ]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_missing_base_path_is_a_one_line_error(tmp_path: Path):
    line = _one_line_error(serve("--model_base_path", str(tmp_path / "nowhere")))
    assert "nowhere" in line


def test_no_model_is_a_one_line_error():
    assert "--model_base_path" in _one_line_error(serve())


def test_bad_model_config_is_a_one_line_error(serving_fixtures: Path):
    config = serving_fixtures / "bad_model_config.txt"
    assert "bad_model_config.txt" in _one_line_error(serve("--model_config_file", str(config)))


def test_bad_model_config_error_has_tf_servings_parse_error_prefix(serving_fixtures: Path):
    config = serving_fixtures / "bad_model_config.txt"
    line = _one_line_error(serve("--model_config_file", str(config)))
    assert "Error parsing text-format tensorflow.serving.ModelServerConfig: 1:1: " in line


def test_model_config_with_a_missing_base_path_is_a_one_line_error(tmp_path: Path):
    config = tmp_path / "models.config"
    config.write_text('model_config_list { config { name: "m" base_path: "/no/such/dir" } }')
    assert "/no/such/dir" in _one_line_error(serve("--model_config_file", str(config)))


def test_bad_monitoring_config_is_a_one_line_error(serving_fixtures: Path, tmp_path: Path):
    config = tmp_path / "monitoring.config"
    config.write_text("prometheus_config { enable: maybe }")
    line = _one_line_error(
        serve(
            *("--model_base_path", str(serving_fixtures / "saved_model_half_plus_two_cpu")),
            *("--monitoring_config_file", str(config)),
        )
    )
    assert "monitoring.config" in line


def test_metrics_need_the_rest_port(serving_fixtures: Path):
    line = _one_line_error(
        serve(
            *("--model_base_path", str(serving_fixtures / "saved_model_half_plus_two_cpu")),
            *("--monitoring_config_file", str(serving_fixtures / "monitoring_config.txt")),
            *("--rest_api_port", "0"),
        )
    )
    assert "REST" in line


def test_a_taken_port_is_a_one_line_error(serving_fixtures: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve(
            *("--model_base_path", str(serving_fixtures / "saved_model_half_plus_two_cpu")),
            *("--port", "0", "--rest_api_port", str(port)),
        )
    assert str(port) in _one_line_error(result)


def test_single_model_flags_serve_the_documented_answers(model_server, serving_fixtures: Path):
    """The TF Serving quick start, with the default model name and port 0 for gRPC."""
    server = model_server(
        "--model_base_path", str(serving_fixtures / "saved_model_half_plus_two_cpu")
    )
    predict = requests.post(
        f"{server.rest_url}/v1/models/default:predict", json={"instances": [1.0, 2.0, 5.0]}
    )
    assert predict.status_code == 200
    assert predict.json() == {"predictions": [2.5, 3.0, 4.5]}
    metadata = requests.get(f"{server.rest_url}/v1/models/default/metadata").json()
    expected = json.loads((serving_fixtures / "half_plus_two_model_metadata.json").read_text())
    assert metadata == expected
