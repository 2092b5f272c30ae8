"""A long many-batch unpinned predict rides out a rollout (v2 published, v1's directory
deleted): it succeeds, every batch answered by one version, which it reports. The REST
client never turns the unpinned request into a pinned one (a version it learned may retire
first); both clients send a request again if the model changed between its batches."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fmnist.serving.client import GrpcClient, Prediction, RestClient

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("api", ["REST", "gRPC"])
def test_a_long_unpinned_predict_rides_out_a_rollout(
    api: str, model_server, fmnist_models: dict, publish, tmp_path: Path
):
    model_dir = tmp_path / "fav"
    model_dir.mkdir()
    publish(fmnist_models[3], model_dir, 1)
    server = model_server(
        *("--model_name", "fav", "--model_base_path", str(model_dir)),
        *("--file_system_poll_wait_seconds", "0.1"),
    )
    images = np.zeros((2_000, 28, 28), np.uint8)
    results: list[Prediction | BaseException] = []
    if api == "REST":
        client = RestClient(server.rest_url, "fav", timeout=60, batch_size=4)
    else:  # much faster per call: smaller batches, so the request spans the rollout
        client = GrpcClient(server.grpc_target, "fav", timeout=60, batch_size=1)

    def run() -> None:
        try:
            results.append(client.predict(images))
        except BaseException as err:  # handed to the test thread
            results.append(err)

    worker = threading.Thread(target=run)
    try:
        worker.start()
        publish(fmnist_models[7], model_dir, 2)
        deadline = time.monotonic() + 60
        with RestClient(server.rest_url, "fav") as watcher:
            while True:  # until version 2 serves and version 1 has ended
                states = {s["version"]: s["state"] for s in watcher.status()}
                if states.get(2) == "AVAILABLE" and states.get(1, "END") == "END":
                    break
                assert time.monotonic() < deadline, states
                time.sleep(0.05)
        shutil.rmtree(model_dir / "1")
        assert worker.is_alive(), "the request ended before the rollout: nothing was tested"
        worker.join(120)
        assert not worker.is_alive()
    finally:
        client.close()
    (prediction,) = results
    assert isinstance(prediction, Prediction), repr(prediction)
    assert prediction.model_version == 2
    assert set(prediction.class_ids.tolist()) == {7}  # every batch from version 2
