"""GrpcClient and RestClient against real `fmnist serve` processes on loopback: TF Serving's
own test models, our exported model, versions and labels, batching, size limits, deadlines,
retries and the error type."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from fmnist import dataset
from fmnist.errors import UserError
from fmnist.manifest import load_manifest
from fmnist.serving.client import GrpcClient, RestClient, ServingError
from fmnist.serving.server.process import start_server

X = np.array([1.0, 2.0, 5.0], np.float32)
HALF_PLUS_TWO = [2.5, 3.0, 4.5]  # TF Serving's documented answer


def _clients(server, model: str, **options) -> list:
    return [
        GrpcClient(server.grpc_target, model, **options),
        RestClient(server.rest_url, model, **options),
    ]


@pytest.fixture(scope="module")
def fmnist_server(exported_bundle: Path, session_model_server):
    """Our exported tiny CNN, served from the models.config export wrote (label stable -> 1)."""
    return session_model_server(
        "--model_config_file", str(exported_bundle.parent.parent / "models.config")
    )


@pytest.fixture(scope="module")
def test_images(data_dir: Path) -> np.ndarray:
    return dataset.load_test(data_dir).images[:300]


def test_both_clients_answer_half_plus_two(half_plus_two_server) -> None:
    for client in _clients(half_plus_two_server, "half_plus_two"):
        with client:
            for choice in ({}, {"version": 123}, {"label": "stable"}):
                outputs, version = client.predict_raw({"x": X}, **choice)
                assert version == 123, (client.where, choice)
                np.testing.assert_allclose(outputs["y"], HALF_PLUS_TWO)
        with _clients(half_plus_two_server, "half_plus_three")[0] as three:
            np.testing.assert_allclose(three.predict_raw({"x": X})[0]["y"], [3.5, 4.0, 5.5])


def test_status_metadata_and_waiting(half_plus_two_server) -> None:
    for client in _clients(half_plus_two_server, "half_plus_two"):
        with client:
            (status,) = client.status()
            assert (status["version"], status["state"]) == (123, "AVAILABLE")
            assert client.wait_until_available(5) == 123
            metadata = client.metadata()
            signatures = metadata["metadata"]["signature_def"]["signature_def"]
            assert "serving_default" in signatures and "regress_x_to_y" in signatures
            assert str(metadata["model_spec"]["version"]) == "123"


@pytest.mark.parametrize(
    "choice, named, code, http",
    [
        ({"model": "no_such_model"}, "no_such_model", "NOT_FOUND", 404),
        ({"version": 999}, "999", "NOT_FOUND", 404),
        # TF Serving answers an unknown label with INVALID_ARGUMENT, not NOT_FOUND.
        ({"label": "nightly"}, "nightly", "INVALID_ARGUMENT", 400),
    ],
)
def test_missing_model_version_or_label_fails_at_once_naming_it(
    half_plus_two_server, choice: dict, named: str, code: str, http: int
) -> None:
    model = choice.pop("model", "half_plus_two")
    for client in _clients(half_plus_two_server, model, timeout=20):
        with client:
            with pytest.raises(ServingError) as caught:
                client.predict_raw({"x": X}, **choice)
            err = caught.value
            assert err.attempts == 1, "a missing model must not be retried"
            assert err.code == code and named in err.message, str(err)
            assert err.http_status == (http if isinstance(client, RestClient) else None)
            assert isinstance(err, UserError) and named in str(err)
            assert client.endpoint in str(err) and f"model {model!r}" in str(err)
            assert "\n" not in str(err)


def test_invalid_requests_are_not_retried(half_plus_two_server) -> None:
    for client in _clients(half_plus_two_server, "half_plus_two", timeout=20):
        with client:
            with pytest.raises(ServingError) as caught:
                client.predict_raw({"not_x": X})
            assert caught.value.code == "INVALID_ARGUMENT"
            assert caught.value.attempts == 1
            with pytest.raises(UserError, match="version or a label"):
                client.predict_raw({"x": X}, version=123, label="stable")


def test_message_size_limits(half_plus_two_server) -> None:
    big = np.ones(400_000, np.float32)  # 1.6 MB: over the server's 1 MiB limit
    with GrpcClient(half_plus_two_server.grpc_target, "half_plus_two") as client:
        with pytest.raises(ServingError) as caught:
            client.predict_raw({"x": big})
        assert caught.value.code == "RESOURCE_EXHAUSTED"
    with RestClient(half_plus_two_server.rest_url, "half_plus_two") as client:
        with pytest.raises(ServingError) as caught:
            client.predict_raw({"x": big})
        assert caught.value.http_status == 413 or caught.value.code == "RESOURCE_EXHAUSTED"
    small = np.ones(10_000, np.float32)
    tiny = GrpcClient(half_plus_two_server.grpc_target, "half_plus_two", max_message_bytes=4096)
    with tiny, pytest.raises(ServingError) as caught:
        tiny.predict_raw({"x": small})
    assert caught.value.code == "RESOURCE_EXHAUSTED"
    assert "max_message_bytes 4096" in str(caught.value)
    with GrpcClient(half_plus_two_server.grpc_target, "half_plus_two") as roomy:
        np.testing.assert_allclose(roomy.predict_raw({"x": small})[0]["y"], small / 2 + 2)


def test_both_clients_agree_with_the_exported_reference(
    fmnist_server, exported_bundle: Path, test_images: np.ndarray
) -> None:
    reference = load_manifest(exported_bundle).load_reference()[: len(test_images)]
    answers = []
    for client in _clients(fmnist_server, "fashion_mnist", batch_size=64):
        with client:
            prediction = client.predict(test_images)
            assert prediction.model_version == 1
            assert prediction.probabilities.dtype == np.float32
            assert prediction.probabilities.shape == (300, 10)
            np.testing.assert_allclose(prediction.probabilities, reference, atol=1e-5, rtol=0)
            np.testing.assert_array_equal(prediction.class_ids, reference.argmax(1))
            pinned = client.predict(test_images[:5, :, :, None], version=1)  # [N, 28, 28, 1]
            np.testing.assert_allclose(pinned.probabilities, reference[:5], atol=1e-5, rtol=0)
            labelled = client.predict(test_images[:5], label="stable")
            assert labelled.model_version == 1
            answers.append(prediction.probabilities)
    np.testing.assert_allclose(answers[0], answers[1], atol=1e-6, rtol=0)


def test_batching_gives_the_answer_of_one_big_request(fmnist_server, test_images) -> None:
    target = fmnist_server.grpc_target
    with (
        GrpcClient(target, "fashion_mnist", batch_size=7) as small,
        GrpcClient(target, "fashion_mnist", batch_size=1000) as big,
    ):
        np.testing.assert_allclose(
            small.predict(test_images).probabilities,
            big.predict(test_images).probabilities,
            atol=1e-6,
        )


def test_bad_images_are_user_errors(fmnist_server, test_images) -> None:
    with GrpcClient(fmnist_server.grpc_target, "fashion_mnist") as client:
        for bad in (test_images.astype(np.float32), test_images[:, :20], test_images[:0]):
            with pytest.raises(UserError, match=r"images|no images"):
                client.predict(bad)


@pytest.fixture(scope="module")
def slow_server(fmnist_models: dict, session_model_server, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("slow") / "favourite"
    shutil.copytree(fmnist_models[3], model_dir / "1")
    return session_model_server("--model_name", "fav", "--model_base_path", str(model_dir))


def test_every_call_has_a_deadline(slow_server) -> None:
    images = np.zeros((1, 28, 28), np.uint8)
    inputs = {"images": images, "sleep_ms": np.array(5000, np.int64)}
    for client in _clients(slow_server, "fav", timeout=0.5):
        with client:
            start = time.monotonic()
            with pytest.raises(ServingError) as caught:
                client.predict_raw(inputs, signature="slow")
            assert caught.value.code == "DEADLINE_EXCEEDED", str(caught.value)
            assert time.monotonic() - start < 2.5
            assert client.predict(images).class_ids.tolist() == [3]  # fast calls still work


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_client_started_before_the_server_retries_until_it_answers(
    fmnist_models: dict, tmp_path: Path
) -> None:
    model_dir = tmp_path / "fav"
    shutil.copytree(fmnist_models[7], model_dir / "1")
    grpc_port, rest_port = _free_port(), _free_port()
    servers = []

    def start_late() -> None:
        # No sleep needed: the server binds its ports only after importing TF and loading
        # the model (seconds), so the clients below start while nothing listens.
        servers.append(
            start_server(
                *("--port", str(grpc_port), "--rest_api_port", str(rest_port)),
                *("--model_name", "fav", "--model_base_path", str(model_dir)),
                log_dir=tmp_path / "logs",
            )
        )

    starter = threading.Thread(target=start_late)
    starter.start()
    try:
        images = np.zeros((2, 28, 28), np.uint8)
        options = {"timeout": 90, "retries": 100, "max_backoff": 0.5}
        with GrpcClient(f"127.0.0.1:{grpc_port}", "fav", **options) as client:
            assert client.wait_until_available(90) == 1
            assert client.predict(images).class_ids.tolist() == [7, 7]
        with RestClient(f"http://127.0.0.1:{rest_port}", "fav", **options) as client:
            assert client.predict(images).class_ids.tolist() == [7, 7]
    finally:
        starter.join()
        for server in servers:
            assert server.stop() == 0


def test_server_killed_mid_run_fails_clearly_within_the_deadline(
    fmnist_models: dict, tmp_path: Path
) -> None:
    model_dir = tmp_path / "fav"
    shutil.copytree(fmnist_models[3], model_dir / "1")
    server = start_server(
        "--model_name", "fav", "--model_base_path", str(model_dir), log_dir=tmp_path / "logs"
    )
    images = np.zeros((4, 28, 28), np.uint8)
    clients = _clients(server, "fav", timeout=3, max_backoff=0.5)
    try:
        for client in clients:
            assert client.predict(images).class_ids.tolist() == [3] * 4
        server.process.kill()
        server.process.wait(30)
        for client in clients:
            start = time.monotonic()
            with pytest.raises(ServingError) as caught:
                client.predict(images)
            elapsed = time.monotonic() - start
            err = caught.value
            assert err.code == "UNAVAILABLE", str(err)
            assert str(err).startswith(f"could not reach TF Serving at {client.endpoint}")
            assert "attempts in" in str(err) and "'fav'" in str(err)
            assert 1 < elapsed < 6, elapsed  # retried within the deadline, then stopped
    finally:
        for client in clients:
            client.close()
        if server.process.poll() is None:
            server.process.kill()


def test_waiting_for_a_model_that_never_comes_is_bounded(tmp_path: Path) -> None:
    with RestClient(f"127.0.0.1:{_free_port()}", "nothing") as client:
        start = time.monotonic()
        with pytest.raises(ServingError, match=r"not AVAILABLE within 1\.5 s"):
            client.wait_until_available(1.5)
        assert time.monotonic() - start < 4


def test_json_quirks_nan_infinity_and_b64(half_plus_two_server, slow_server) -> None:
    special = np.array([np.nan, np.inf, -np.inf], np.float32)
    blobs = np.array([b"\x00\xffbinary", b"", b"c"], object)
    for columnar in (False, True):
        with (
            RestClient(half_plus_two_server.rest_url, "half_plus_two", columnar=columnar) as hp2,
            RestClient(slow_server.rest_url, "fav", columnar=columnar) as fav,
        ):
            y = hp2.predict_raw({"x": special})[0]["y"]
            np.testing.assert_array_equal(y, [np.nan, np.inf, -np.inf])
            echo = fav.predict_raw({"blobs": blobs}, signature="echo")[0]
            assert echo["echo_bytes"].tolist() == blobs.tolist()
            assert echo["length"].tolist() == [8, 0, 1]
    with GrpcClient(slow_server.grpc_target, "fav") as client:
        echo = client.predict_raw({"blobs": blobs}, signature="echo")[0]
        assert echo["echo_bytes"].tolist() == blobs.tolist()


def test_unreachable_server_gives_up_within_the_deadline() -> None:
    port = _free_port()
    for client in (
        GrpcClient(f"127.0.0.1:{port}", "fashion_mnist", timeout=1.5),
        RestClient(f"127.0.0.1:{port}", "fashion_mnist", timeout=1.5),
    ):
        with client:
            start = time.monotonic()
            with pytest.raises(ServingError) as caught:
                client.predict(np.zeros((1, 28, 28), np.uint8), version=1)
            assert time.monotonic() - start < 2.5
            message = str(caught.value)
            assert message.startswith(f"could not reach TF Serving at {client.endpoint}")
            assert "'fashion_mnist' version 1" in message and "UNAVAILABLE" in message


class _FlakyFrontend(BaseHTTPRequestHandler):
    """A real HTTP server on loopback standing where a load balancer would: it answers 503 to
    the first `unavailable` requests, then forwards nothing but a fixed TF Serving status (or
    400 for POSTs), counting every request it sees."""

    unavailable = 2
    seen: list[str] = []  # noqa: RUF012 (per-test: reset by the fixture)

    def do_GET(self) -> None:
        self.seen.append("GET")
        if len(self.seen) <= self.unavailable:
            self._reply(503, {"error": "upstream connect error"})
        else:
            self._reply(200, {"model_version_status": [{"version": "4", "state": "AVAILABLE"}]})

    def do_POST(self) -> None:
        self.seen.append("POST")
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._reply(400, {"error": "Expected tensor name: images"})

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky_frontend():
    _FlakyFrontend.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FlakyFrontend)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _FlakyFrontend.seen
    server.shutdown()
    server.server_close()


def test_rest_retries_503_with_backoff_but_never_a_bad_request(flaky_frontend) -> None:
    url, seen = flaky_frontend
    with RestClient(url, "fashion_mnist", timeout=10, backoff=0.2) as client:
        start = time.monotonic()
        assert client.status() == [
            {"version": 4, "state": "AVAILABLE", "error_code": "OK", "error_message": ""}
        ]
        elapsed = time.monotonic() - start
        assert seen == ["GET"] * 3
        assert elapsed >= 0.1 + 0.2, elapsed  # two pauses, the second one longer (jittered)
        seen.clear()
        with pytest.raises(ServingError) as caught:
            client.predict_raw({"x": X}, version=4)
        assert seen == ["POST"], "a 400 must not be retried"
        assert (caught.value.code, caught.value.http_status) == ("INVALID_ARGUMENT", 400)
        assert "Expected tensor name: images" in str(caught.value)


def test_a_bad_rest_url_is_a_user_error_not_a_retry() -> None:
    for url in ("localhost:abc", "http://:8501", "http://localhost:8501?x=1"):
        with pytest.raises(UserError, match="invalid TF Serving REST URL"):
            RestClient(url, "fashion_mnist")


def test_server_killed_during_a_many_batch_request(fmnist_models: dict, tmp_path: Path) -> None:
    model_dir = tmp_path / "fav"
    shutil.copytree(fmnist_models[3], model_dir / "1")
    server = start_server(
        "--model_name", "fav", "--model_base_path", str(model_dir), log_dir=tmp_path / "logs"
    )
    images = np.zeros((40_000, 28, 28), np.uint8)
    errors: list[BaseException] = []
    client = GrpcClient(server.grpc_target, "fav", timeout=3, max_backoff=0.5, batch_size=8)

    def run() -> None:
        try:
            client.predict(images)
        except BaseException as err:  # handed to the test thread
            errors.append(err)

    worker = threading.Thread(target=run)
    try:
        worker.start()
        time.sleep(1.0)  # well into the 5,000 batches
        assert worker.is_alive(), "the request finished before the server could be killed"
        server.process.kill()
        killed = time.monotonic()
        worker.join(15)
        assert not worker.is_alive(), "the client hung after the server died"
        assert time.monotonic() - killed < 6
        (err,) = errors
        assert isinstance(err, ServingError) and err.code == "UNAVAILABLE", repr(err)
        assert str(err).startswith(f"could not reach TF Serving at {server.grpc_target}")
    finally:
        client.close()
        if server.process.poll() is None:
            server.process.kill()


def test_client_rides_out_a_server_restart(fmnist_models: dict, tmp_path: Path) -> None:
    model_dir = tmp_path / "fav"
    shutil.copytree(fmnist_models[7], model_dir / "1")
    grpc_port, rest_port = _free_port(), _free_port()
    flags = (
        *("--port", str(grpc_port), "--rest_api_port", str(rest_port)),
        *("--model_name", "fav", "--model_base_path", str(model_dir)),
    )
    servers = [start_server(*flags, log_dir=tmp_path / "logs")]
    images = np.zeros((3, 28, 28), np.uint8)
    clients = [
        GrpcClient(f"127.0.0.1:{grpc_port}", "fav", timeout=90, max_backoff=0.5),
        RestClient(f"http://127.0.0.1:{rest_port}", "fav", timeout=90, max_backoff=0.5),
    ]
    try:
        for client in clients:
            assert client.predict(images).class_ids.tolist() == [7, 7, 7]
        assert servers[0].stop() == 0  # SIGTERM: a restart, as an orchestrator does it

        def restart() -> None:
            time.sleep(1.5)
            servers.append(start_server(*flags, log_dir=tmp_path / "logs2"))

        restarter = threading.Thread(target=restart)
        restarter.start()
        try:
            for client in clients:  # sent while the server is down: retried until it is back
                assert client.predict(images).class_ids.tolist() == [7, 7, 7]
        finally:
            restarter.join()
    finally:
        for client in clients:
            client.close()
        for server in servers[1:]:
            assert server.stop() == 0
