"""Warm-up requests from request logs: a sample of the logged Predict requests that fit the
exported signature, their model spec rewritten to the exported version, the others counted
by reason; logs with none that fits are a one-line error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fmnist.errors import UserError
from fmnist.export.config import ExportConfig
from fmnist.export.warmup_from_logs import WARMUP_FILE, select_warmup_requests
from fmnist.serving.wire import messages as pb
from fmnist.serving.wire.prediction_log import prediction_log, write_prediction_logs
from fmnist.serving.wire.tensor_proto import to_tensor_proto
from fmnist.serving.wire.tfrecord import read_records

INPUTS = {"images": {"dtype": "uint8", "shape": [-1, 28, 28]}}


def logged(
    images: np.ndarray | None = None,
    *,
    name: str = "images",
    signature: str = "",
    label: str = "stable",
) -> pb.PredictionLog:
    request = pb.PredictRequest()
    request.model_spec.name, request.model_spec.version_label = "logged_model", label
    request.model_spec.signature_name = signature
    images = np.zeros((1, 28, 28), np.uint8) if images is None else images
    request.inputs[name].CopyFrom(to_tensor_proto(images))
    response = pb.PredictResponse()
    response.model_spec.version.value = 1
    response.outputs["probabilities"].CopyFrom(to_tensor_proto(np.ones((1, 10), np.float32)))
    return prediction_log(request, response)


def select(tmp_path: Path, entries: list, limit: int = 100):
    write_prediction_logs(tmp_path / "log.tfrecord", entries)
    return select_warmup_requests(
        [tmp_path / "log.tfrecord"],
        model_name="fashion_mnist",
        version=7,
        signature_name="serving_default",
        inputs=INPUTS,
        limit=limit,
    )


def test_fitting_requests_are_rewritten_for_the_exported_version(tmp_path: Path) -> None:
    batches = [np.full((n, 28, 28), n, np.uint8) for n in (1, 8, 3)]
    selection = select(tmp_path, [logged(b) for b in batches])
    path = selection.write(tmp_path / "bundle")
    assert path == tmp_path / "bundle" / WARMUP_FILE
    warmups = [pb.PredictionLog.FromString(r) for r in read_records(path)]
    assert [w.predict_log.request.inputs["images"].tensor_shape.dim[0].size for w in warmups] == [
        1,
        8,
        3,
    ]  # in log order
    spec = warmups[0].predict_log.request.model_spec
    assert (spec.name, spec.version.value, spec.signature_name) == (
        "fashion_mnist",
        7,
        "serving_default",
    )
    assert spec.WhichOneof("version_choice") == "version"  # the logged label is gone
    assert not warmups[0].predict_log.HasField("response")
    assert selection.summary() == "warm-up: 3 logged requests of 3 that fit (3 read from 1 file)"


def test_at_most_the_limit_a_sample_across_the_log(tmp_path: Path) -> None:
    entries = [logged(np.full((1, 28, 28), i, np.uint8)) for i in range(50)]
    selection = select(tmp_path, entries, limit=10)
    assert len(selection.records) == 10 and selection.fitting == 50
    firsts = [
        pb.PredictionLog.FromString(r).predict_log.request.inputs["images"].tensor_content[0]
        for r in selection.records
    ]
    assert firsts == sorted(firsts) and max(firsts) >= 10  # not just the first ten


def _bad_content() -> pb.PredictionLog:
    entry = logged()
    entry.predict_log.request.inputs["images"].tensor_content = b"\0" * 10
    return entry


def _classify() -> pb.PredictionLog:
    request, response = pb.ClassificationRequest(), pb.ClassificationResponse()
    return prediction_log(request, response)


MISFITS = [
    ("classify", _classify, "not_a_predict_request"),
    ("other signature", lambda: logged(signature="slow"), "other_signature"),
    ("other input name", lambda: logged(name="pixels"), "inputs_do_not_fit"),
    ("float images", lambda: logged(np.zeros((1, 28, 28), np.float32)), "inputs_do_not_fit"),
    ("27 columns", lambda: logged(np.zeros((1, 28, 27), np.uint8)), "inputs_do_not_fit"),
    ("channels", lambda: logged(np.zeros((1, 28, 28, 1), np.uint8)), "inputs_do_not_fit"),
    ("content too short", _bad_content, "inputs_do_not_fit"),
]


@pytest.mark.parametrize(("make", "reason"), [pytest.param(m, r, id=n) for n, m, r in MISFITS])
def test_requests_that_do_not_fit_are_counted(tmp_path: Path, make, reason: str) -> None:
    selection = select(tmp_path, [logged(), make()])
    assert len(selection.records) == 1 and dict(selection.skipped) == {reason: 1}
    assert f"skipped: {reason} 1" in selection.summary()


def test_logs_with_nothing_that_fits_are_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(UserError) as raised:
        select(tmp_path, [logged(name="pixels"), _classify()])
    message = str(raised.value)
    assert message.startswith(
        "--warmup-from: no logged Predict request fits the serving_default signature "
        "(images uint8 [-1, 28, 28]); 0 logged requests of 0 that fit (2 read from 1 file; "
        "skipped: inputs_do_not_fit 1, not_a_predict_request 1)"
    )


def test_reading_damage_is_counted_like_the_log_reader_does(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    write_prediction_logs(tmp_path / "logs" / "a.tfrecord", [logged()])
    (tmp_path / "logs" / "b.tfrecord").write_bytes(b"\x01" * 40)
    selection = select_warmup_requests(
        [tmp_path / "logs"],
        model_name="m",
        version=1,
        signature_name="serving_default",
        inputs=INPUTS,
        limit=5,
    )
    assert len(selection.records) == 1 and selection.reading.skipped == {"damaged_file": 1}


@pytest.mark.parametrize("count", [0, 1001])
def test_the_count_is_bounded_as_tf_serving_reads_warmup_files(tmp_path: Path, count: int):
    with pytest.raises(UserError, match="--warmup-count must be 1-1000"):
        ExportConfig(base_path=tmp_path, warmup_count=count)
