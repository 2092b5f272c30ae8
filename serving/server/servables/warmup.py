"""TF Serving's model warm-up: replay `assets.extra/tf_serving_warmup_requests` (a TFRecord of
PredictionLogs) through a version before it becomes AVAILABLE; any failure fails its load.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from google.protobuf import message

from fmnist.serving.server.servables.base import Servable
from fmnist.serving.server.servables.examples import multi_inference_tasks, serialized_examples
from fmnist.serving.wire import tensor_proto
from fmnist.serving.wire.messages import PredictionLog
from fmnist.serving.wire.status import StatusError
from fmnist.serving.wire.tfrecord import TFRecordError, read_records

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
MAX_RECORDS = 1000  # TF Serving's kMaxNumRecords
log = logging.getLogger(__name__)


class WarmupError(Exception):
    """A version's warm-up file cannot be read or one of its requests failed."""


def with_warmup(loader: Callable[[Path], Servable]) -> Callable[[Path], Servable]:
    """`loader` followed by the version's warm-up replay; the model is closed if it fails."""

    def load(version_dir: Path) -> Servable:
        model = loader(version_dir)
        try:
            replay(model, version_dir)
        except BaseException:
            model.close()
            raise
        return model

    return load


def replay(model: Servable, version_dir: Path) -> int:
    """Run every warm-up record of `version_dir` through `model`; returns how many ran."""
    path = version_dir / WARMUP_FILE
    if not path.is_file():
        return 0
    started, count = time.monotonic(), 0
    try:
        for record in read_records(path):
            count += 1
            if count > MAX_RECORDS:
                raise WarmupError(
                    f"Number of warmup records exceeds the maximum ({MAX_RECORDS}) at {path}"
                )
            try:
                entry = PredictionLog.FromString(record)
            except message.DecodeError:
                raise WarmupError(f"Failed to parse warmup record from {path}") from None
            _run(model, entry)
    except (TFRecordError, OSError) as err:
        raise WarmupError(f"Failed to read warmup record from {path}: {err}") from None
    elapsed_us = int((time.monotonic() - started) * 1e6)
    log.info(
        "Finished reading warmup data for model at %s. Number of warmup records read: %d. "
        "Elapsed time (microseconds): %d.",
        path,
        count,
        elapsed_us,
    )
    return count


def _run(model: Servable, entry: Any) -> None:
    """One record's request; a failure is the load's (TF Serving stops at the first)."""
    kind = entry.WhichOneof("log_type")
    try:
        if kind == "predict_log":
            request = entry.predict_log.request
            inputs = {a: tensor_proto.to_ndarray(p, name=a) for a, p in request.inputs.items()}
            model.predict(request.model_spec.signature_name, inputs, list(request.output_filter))
        elif kind in ("classify_log", "regress_log"):
            request, task = getattr(entry, kind).request, getattr(model, kind.split("_")[0])
            task(request.model_spec.signature_name, serialized_examples(request.input))
        elif kind == "multi_inference_log":
            request = entry.multi_inference_log.request
            tasks, _ = multi_inference_tasks(request)
            model.multi_inference(tasks, serialized_examples(request.input))
        else:
            raise WarmupError(f"Unsupported log_type for warmup: {kind}")
    except StatusError as err:
        raise WarmupError(f"warmup {kind} request failed: {err.message}") from None
