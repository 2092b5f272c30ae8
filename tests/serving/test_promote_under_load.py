"""`fmnist promote` moves `stable` to a blessed version and back while gRPC and REST clients
send requests for `stable` without pause; a real `fmnist serve` follows models.config
through its poller. No request fails, and every answer comes from a loaded version: class 3
is version 1's answer and class 7 version 2's, and gRPC answers say which version gave them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import requests

from fmnist.rollout.blessing import record_comparison
from fmnist.serving.client import GrpcClient, RestClient, ServingError

pytestmark = pytest.mark.integration
CLASS_OF_VERSION = {1: 3, 2: 7}


@dataclass
class Load:
    """Requests for `stable` from gRPC and REST threads until stopped; every outcome kept."""

    server: object
    stop: threading.Event = field(default_factory=threading.Event)
    answers: list[tuple[str, int, int | None]] = field(default_factory=list)  # api, class, v
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def grpc(self) -> None:
        image = {"images": np.zeros((1, 28, 28), np.uint8)}
        with GrpcClient(self.server.grpc_target, "fav", timeout=30) as client:
            while not self.stop.is_set():
                try:
                    outputs, version = client.predict_raw(image, label="stable")
                    self._answer("gRPC", int(outputs["class_ids"][0]), version)
                except ServingError as err:
                    self._fail(f"gRPC: {err}")

    def rest(self) -> None:
        url = f"{self.server.rest_url}/v1/models/fav/labels/stable:predict"
        body = {"instances": [np.zeros((28, 28), int).tolist()]}
        with requests.Session() as session:
            while not self.stop.is_set():
                try:
                    response = session.post(url, json=body, timeout=30)
                    if response.status_code != 200:
                        self._fail(f"REST {response.status_code}: {response.text[:200]}")
                        continue
                    self._answer("REST", int(response.json()["predictions"][0]["class_ids"]), None)
                except requests.RequestException as err:
                    self._fail(f"REST: {err}")

    def _answer(self, api: str, class_id: int, version: int | None) -> None:
        with self.lock:
            self.answers.append((api, class_id, version))

    def _fail(self, what: str) -> None:
        with self.lock:
            self.failures.append(what)

    def wait_for(self, class_id: int, count: int, timeout: float = 60) -> None:
        """Until `count` more answers of class `class_id` came from both APIs."""
        start = len(self.answers)
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                recent = Counter(api for api, c, _ in self.answers[start:] if c == class_id)
            if min(recent["gRPC"], recent["REST"]) >= count:
                return
            assert time.monotonic() < deadline, (class_id, recent, self.failures[:3])
            time.sleep(0.05)


def promote(base: Path, server, version: int) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "fmnist.cli", "promote", str(base), "--name", "fav",
         "--label", "stable", "--to", str(version), "--grpc", server.grpc_target, "--wait", "60"],
        capture_output=True, text=True, timeout=120, env={**os.environ},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def deploy(base: Path, fmnist_models: dict, versions: dict[int, int], stable: int) -> None:
    """Model `fav` under BASE: version -> favourite class, latest 2 served, stable set."""
    for version, favourite in versions.items():
        shutil.copytree(fmnist_models[favourite], base / "fav" / str(version))
    (base / "models.config").write_text(
        f"model_config_list {{ config {{ name: 'fav' base_path: '{base / 'fav'}' "
        "model_platform: 'tensorflow' model_version_policy { latest { num_versions: 2 } } "
        f"version_labels {{ key: 'stable' value: {stable} }} }} }}"
    )


def bless(base: Path, version: int, baseline: int) -> None:
    """As fmnist compare records a pass (these models have no manifest)."""
    record_comparison(
        base / "fav" / str(version),
        model_name="fav",
        model_version=version,
        manifest_sha256=None,
        blessed=True,
        baseline={"version": baseline, "manifest_sha256": None},
        comparison={"failures": []},
    )


def serve_and_load(model_server, base: Path) -> tuple[object, Load, list[threading.Thread]]:
    """`fmnist serve` of BASE/models.config, re-read every 0.2 s, and the load against it."""
    server = model_server(
        *("--model_config_file", str(base / "models.config")),
        *("--model_config_file_poll_wait_seconds", "0.2"),
    )
    load = Load(server)
    threads = [threading.Thread(target=w) for w in (load.grpc, load.grpc, load.rest, load.rest)]
    for thread in threads:
        thread.start()
    return server, load, threads


def stop_load(load: Load, threads: list[threading.Thread]) -> None:
    load.stop.set()
    for thread in threads:
        thread.join(60)


def test_promotion_and_rollback_lose_no_request(
    fmnist_models: dict, model_server, tmp_path: Path
) -> None:
    base = tmp_path / "models"
    deploy(base, fmnist_models, {1: 3, 2: 7}, stable=1)
    bless(base, 2, baseline=1)
    server, load, threads = serve_and_load(model_server, base)
    try:
        load.wait_for(3, 20)
        promoted = promote(base, server, 2)
        load.wait_for(7, 50)
        rolled_back = promote(base, server, 1)
        load.wait_for(3, 50)
    finally:
        stop_load(load, threads)
    assert "allowed: blessed" in promoted.stdout and "server: stable answers from version 2" in (
        promoted.stdout
    )
    assert "allowed: rollback: stable named version 1 before version 2" in rolled_back.stdout
    assert load.failures == []
    by_class = Counter(class_id for _, class_id, _ in load.answers)
    assert set(by_class) == {3, 7} and len(load.answers) > 200
    wrong = [(c, v) for api, c, v in load.answers if api == "gRPC" and CLASS_OF_VERSION[v] != c]
    assert wrong == []  # each gRPC answer came from the version it names
    with RestClient(server.rest_url, "fav") as client:
        assert {s["version"]: s["state"] for s in client.status()} == {
            1: "AVAILABLE",
            2: "AVAILABLE",
        }
    print(f"answers {len(load.answers)} ({dict(by_class)}), failures {len(load.failures)}")


def test_a_version_the_policy_leaves_out_is_loaded_before_the_label_moves(
    fmnist_models: dict, model_server, tmp_path: Path
) -> None:
    """latest 2 serves versions 2 and 3; promoting 1 first adds it to the policy, waits for
    the server to load it, then moves the label (TF Serving refuses a label on a version it
    has not loaded): no request for stable fails meanwhile."""
    base = tmp_path / "models"
    deploy(base, fmnist_models, {1: 3, 2: 7, 3: 7}, stable=2)
    bless(base, 1, baseline=2)
    server, load, threads = serve_and_load(model_server, base)
    try:
        load.wait_for(7, 20)
        done = promote(base, server, 1)
        load.wait_for(3, 50)
    finally:
        stop_load(load, threads)
    assert "waiting for the server to load version 1" in done.stdout
    assert "(version policy changed to specific 1, 2, 3)" in done.stdout
    assert load.failures == []
