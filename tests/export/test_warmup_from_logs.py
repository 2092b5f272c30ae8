"""`fmnist export --warmup-from LOGS` on a real run: the bundle's warm-up file holds logged
requests rewritten for the exported version, its manifest checksums them, and `fmnist serve`
replays them before the version serves, as TF Serving does."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fmnist import dataset
from fmnist.cli import main
from fmnist.export.saved_model import WARMUP_FILE, read_warmup
from fmnist.manifest import load_manifest
from fmnist.serving.server.process import start_server
from fmnist.serving.wire import messages as pb
from fmnist.serving.wire.prediction_log import prediction_log, write_prediction_logs
from fmnist.serving.wire.tensor_proto import to_tensor_proto

TINY_CLASS_DROP = "5"  # the tiny test CNN's per-class limit (tests/conftest.py)


def logged_requests(images: np.ndarray, sizes: list[int]) -> list[pb.PredictionLog]:
    entries, start = [], 0
    for size in sizes:
        request = pb.PredictRequest()
        request.model_spec.name, request.model_spec.version_label = "fashion_mnist", "stable"
        request.inputs["images"].CopyFrom(to_tensor_proto(images[start : start + size]))
        response = pb.PredictResponse()
        response.model_spec.name, response.model_spec.version.value = "fashion_mnist", 1
        entries.append(prediction_log(request, response))
        start += size
    other = pb.PredictRequest()
    other.inputs["images"].CopyFrom(to_tensor_proto(images[:1, :, :20]))  # does not fit
    entries.append(prediction_log(other, pb.PredictResponse()))
    return entries


def test_export_warms_up_from_logged_requests(
    tiny_run: Path, data_dir: Path, tmp_path: Path, capsys
) -> None:
    images = dataset.load_test(data_dir).images[..., None]  # uint8 [N, 28, 28, 1]
    log = write_prediction_logs(
        tmp_path / "requests.tfrecord", logged_requests(images, [1, 4, 1, 16, 2, 1])
    )
    base = tmp_path / "models"
    code = main(
        [
            "export", str(tiny_run), "--base-path", str(base), "--data-dir", str(data_dir),
            "--calibration-size", "100", "--max-class-recall-drop", TINY_CLASS_DROP,
            "--warmup-from", str(log), "--warmup-count", "4",
        ]
    )  # fmt: skip
    assert code == 0
    assert (
        "warm-up: 4 logged requests of 6 that fit (7 read from 1 file; skipped: "
        "inputs_do_not_fit 1)" in capsys.readouterr().out
    )
    bundle = base / "fashion_mnist" / "1"
    warmups = read_warmup(bundle / WARMUP_FILE)
    assert len(warmups) == 4
    spec = warmups[0].predict_log.request.model_spec
    assert (spec.name, spec.version.value) == ("fashion_mnist", 1)
    load_manifest(bundle).verify_file(WARMUP_FILE.as_posix())
    server = start_server("--model_name", "fashion_mnist", "--model_base_path",
                          str(base / "fashion_mnist"), log_dir=tmp_path / "logs")  # fmt: skip
    try:
        assert "Number of warmup records read: 4." in server.log()
    finally:
        assert server.stop() == 0
