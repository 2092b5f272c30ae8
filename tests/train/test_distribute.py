"""Scale-out training: MirroredStrategy on two logical CPU devices, two workers on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np


def _train_command(run: Path, data_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "fmnist.cli",
        "train",
        "--data-dir",
        str(data_dir),
        "--out",
        str(run),
        "--quick",
        "--epochs",
        "1",
        *extra,
    ]


def test_mirrored_training_on_two_cpu_devices(tmp_path: Path, data_dir: Path) -> None:
    run = tmp_path / "mirrored"
    result = subprocess.run(
        _train_command(run, data_dir, "--strategy", "mirrored", "--cpu-devices", "2"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads((run / "run.json").read_text())
    assert info["strategy"] == "MirroredStrategy"
    assert info["replicas"] == 2
    assert json.loads((run / "metrics.json").read_text())["accuracy"] > 0.6


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def test_two_workers_on_loopback(tmp_path: Path, data_dir: Path) -> None:
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config)}
        processes.append(
            subprocess.Popen(
                _train_command(tmp_path / "run", data_dir, "--strategy", "multiworker"),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = [process.communicate(timeout=600) for process in processes]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr[-3000:]
    # One shared run directory, as on a shared file system: the chief owns it, the other
    # worker keeps its copy apart.
    run, other = tmp_path / "run", tmp_path / "run" / "workers" / "worker-1"
    chief = json.loads((run / "run.json").read_text())
    # MultiWorkerMirroredStrategy is an alias of CollectiveAllReduceStrategy.
    assert chief["strategy"] == "CollectiveAllReduceStrategy" and chief["replicas"] == 2
    assert json.loads((run / "metrics.json").read_text())["accuracy"] > 0.6
    assert "not the chief worker" in outputs[1][0]
    # Synchronous training: both workers end with the same trainable weights (batch-norm
    # moving statistics are per worker, as with any non-synchronised batch norm).
    import keras

    weights = [
        [w.numpy() for w in keras.models.load_model(directory / "model.keras").trainable_weights]
        for directory in (run, other)
    ]
    for a, b in zip(*weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert json.loads((other / "run.json").read_text())["replicas"] == 2
    assert not (other / "metrics.json").exists()


def test_multiworker_without_tf_config_is_a_clear_error(tmp_path: Path, data_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    result = subprocess.run(
        _train_command(tmp_path / "r", data_dir, "--strategy", "multiworker"),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 2
    assert "TF_CONFIG" in result.stderr and "Traceback" not in result.stderr
    no_type = {"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"index": 0}}
    result = subprocess.run(
        _train_command(tmp_path / "r", data_dir, "--strategy", "multiworker"),
        capture_output=True,
        text=True,
        env={**env, "TF_CONFIG": json.dumps(no_type)},
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "task (type, index)" in result.stderr and "Traceback" not in result.stderr
