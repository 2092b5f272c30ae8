"""`fmnist compare --logs`: the candidate answers logged traffic on a real `fmnist serve`, side
by side with the baseline for latency, and the traffic thresholds judge it with the test-set
ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fmnist import dataset
from fmnist.serving.client import GrpcClient
from fmnist.serving.wire import messages as pb
from fmnist.serving.wire.prediction_log import PredictionLogWriter, prediction_log
from fmnist.serving.wire.tensor_proto import to_tensor_proto

pytestmark = pytest.mark.integration


def fmnist(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fmnist.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )


@pytest.fixture(scope="module")
def deployment(rollout_versions, session_model_server, data_dir, tmp_path_factory):
    """Versions 1 (the tiny model, stable), 2 (degraded) and 3 (the tiny model again), all
    served; and a log of 200 test images sent to stable, one per request."""
    base = rollout_versions(tmp_path_factory.mktemp("traffic") / "models", "all {}")
    server = session_model_server("--model_config_file", str(base / "models.config"))
    log = base.parent / "requests.tfrecord"
    images = dataset.load_test(data_dir).images[:200, ..., None]  # uint8 [N, 28, 28, 1]
    with GrpcClient(server.grpc_target, "fashion_mnist") as client, PredictionLogWriter(log) as out:
        for image in images:
            request = pb.PredictRequest()
            request.model_spec.name, request.model_spec.version_label = "fashion_mnist", "stable"
            request.inputs["images"].CopyFrom(to_tensor_proto(image[None]))
            out.write(prediction_log(request, client.call("Predict", request)))
    return base, server, log


def compare(deployment, candidate: int, *extra: str, out: Path) -> subprocess.CompletedProcess:
    base, server, log = deployment
    return fmnist(
        "compare", str(base), "--candidate", str(candidate), "--dry-run",
        "--logs", str(log), "--grpc", server.grpc_target, "--latency-samples", "30",
        "--json", str(out), *extra,
    )  # fmt: skip


def test_the_same_model_passes_on_traffic_too(deployment, tmp_path: Path) -> None:
    out = tmp_path / "compare.json"
    done = compare(deployment, 3, "--max-latency-increase", "10", out=out)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    result = json.loads(out.read_text())
    checks = {check["metric"]: check for check in result["checks"]}
    assert checks["traffic_agreement"]["candidate"] == 1.0 and checks["traffic_errors"]["passed"]
    p99 = checks["traffic_latency_p99_ms"]
    assert p99["candidate"] > 0 and p99["baseline"] > 0 and p99["passed"]
    traffic = result["traffic"]
    assert traffic["replayed"] == 200 and traffic["answered_versions"] == {"3": 200}
    assert traffic["latency"]["reference"] == "version 1"
    assert traffic["latency"]["logged"]["answers_as_logged"] == 30
    assert not (deployment[0] / "fashion_mnist" / "3" / "blessing.json").exists()  # --dry-run


def test_a_degraded_model_fails_its_traffic_agreement(deployment, tmp_path: Path) -> None:
    out = tmp_path / "compare.json"
    done = compare(deployment, 2, "--max-accuracy-drop", "100", "--max-class-recall-drop", "100",
                   out=out)  # fmt: skip
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    result = json.loads(out.read_text())
    (failure,) = result["failures"]
    assert failure.startswith("traffic_agreement 0.") and failure.endswith("is below 0.9")
    assert "traffic            200 logged calls replayed against version 2" in done.stdout
