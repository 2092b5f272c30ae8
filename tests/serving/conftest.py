"""Real `fmnist serve` processes on loopback, and small SavedModels to serve.

`model_server(*flags)` (function scope) and `session_model_server(*flags)` (session
scope) start `python -m fmnist.cli serve --port 0 --rest_api_port auto *flags`, wait for
its ready line (models loaded, both ports bound), and stop it with SIGTERM at teardown,
failing the test if it does not exit 0. Client tests reuse them, or the shared
`half_plus_two_server` (TF Serving's half_plus_two and half_plus_three).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fmnist.serving.server.process import ServerProcess, start_server


def _factory(log_dir: Path) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def start(*flags: str, timeout: float = 120) -> ServerProcess:
        server = start_server(*flags, log_dir=log_dir, timeout=timeout)
        started.append(server)
        return server

    yield start
    failures = []
    for server in started:
        code = server.stop()
        if code != 0:
            failures.append(f"exit {code}:\n{server.log()[-2000:]}")
    assert not failures, "servers did not exit cleanly:\n" + "\n".join(failures)


@pytest.fixture
def model_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """`model_server(*flags) -> ServerProcess`; stopped (SIGTERM, must exit 0) after the test."""
    yield from _factory(tmp_path / "logs")


@pytest.fixture(scope="session")
def session_model_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., ServerProcess]]:
    """Like `model_server`, for servers shared by a whole test session."""
    yield from _factory(tmp_path_factory.mktemp("server-logs"))


@pytest.fixture(scope="session")
def half_plus_two_server(
    serving_fixtures: Path, session_model_server, tmp_path_factory
) -> ServerProcess:
    """TF Serving's good_model_config (half_plus_two, half_plus_three) with Prometheus metrics,
    gRPC health, a 1 MiB request limit and a version label `stable` -> 123 on half_plus_two."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse(good_model_config(serving_fixtures), config)
    config.model_config_list.config[0].version_labels["stable"] = 123
    config = text_format.MessageToString(config)
    path = tmp_path_factory.mktemp("hp2-config") / "models.config"
    path.write_text(config)
    return session_model_server(
        *("--model_config_file", str(path)),
        *("--monitoring_config_file", str(serving_fixtures / "monitoring_config.txt")),
        "--enable_grpc_healthcheck_service",
        *("--max_request_bytes", str(1 << 20)),
    )


def good_model_config(serving_fixtures: Path) -> str:
    """TF Serving's good_model_config.txt with its base-path placeholders filled in."""
    return (
        (serving_fixtures / "good_model_config.txt")
        .read_text()
        .replace(
            "${TEST_HALF_PLUS_TWO_DIR}", str(serving_fixtures / "saved_model_half_plus_two_cpu")
        )
        .replace(
            "${TEST_HALF_PLUS_THREE_DIR}", str(serving_fixtures / "saved_model_half_plus_three")
        )
    )


# --- models of our own signature ------------------------------------------------------------


def build_fmnist_model(export_dir: Path, favourite: int) -> Path:
    """A tiny SavedModel with the exported CNN's signature (images uint8 [-1,28,28] ->
    probabilities float32 [-1,10], class_ids int64 [-1]) that always picks `favourite`, plus
    `slow` (an extra int64 input sleep_ms, for in-flight tests) and `echo` (string blobs ->
    echo_bytes, length)."""
    import tensorflow as tf
    from tensorflow.python.data.experimental.ops import testing as data_testing

    class Model(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weights = tf.Variable(tf.random.stateless_normal([784, 10], [favourite, 0]) * 0.01)
            self.bias = tf.Variable(tf.one_hot(favourite, 10) * 50.0)

        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28], tf.uint8, name="images")])
        def serve(self, images):
            pixels = tf.reshape(tf.cast(images, tf.float32) / 255.0, [-1, 784])
            probabilities = tf.nn.softmax(pixels @ self.weights + self.bias)
            return {"probabilities": probabilities, "class_ids": tf.argmax(probabilities, axis=1)}

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, 28, 28], tf.uint8, name="images"),
                tf.TensorSpec([], tf.int64, name="sleep_ms"),
            ]
        )
        def slow(self, images, sleep_ms):
            nap = tf.data.Dataset.range(1).apply(data_testing.sleep(sleep_ms * 1000))
            zero = nap.reduce(tf.constant(0, tf.int64), lambda total, x: total + x)
            outputs = self.serve(images)
            return {**outputs, "class_ids": outputs["class_ids"] + zero}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="blobs")])
        def echo(self, blobs):
            return {"echo_bytes": blobs, "length": tf.strings.length(blobs)}

    model = Model()
    signatures = {"serving_default": model.serve, "slow": model.slow, "echo": model.echo}
    tf.saved_model.save(model, str(export_dir), signatures=signatures)
    return export_dir


@pytest.fixture(scope="session")
def fmnist_models(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Two SavedModels of our signature, favouring class 3 and class 7, built once."""
    root = tmp_path_factory.mktemp("fmnist-models")
    return {k: build_fmnist_model(root / f"favourite-{k}", k) for k in (3, 7)}


def publish_version(source: Path, model_dir: Path, version: int) -> Path:
    """Publish a version the way the export stage does: copy under a hidden non-numeric
    name inside the model directory, then rename it atomically to the version number."""
    staging = model_dir / f".tmp-{version}-{time.monotonic_ns()}"
    shutil.copytree(source, staging)
    target = model_dir / str(version)
    os.rename(staging, target)
    return target


@pytest.fixture
def publish() -> Callable[[Path, Path, int], Path]:
    """`publish(source_dir, model_dir, version)`: atomic rename-into-place publishing."""
    return publish_version
