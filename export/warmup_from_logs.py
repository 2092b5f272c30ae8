"""Warm-up requests from real traffic: `fmnist export --warmup-from LOGS`.

TF Serving replays a version's `assets.extra/tf_serving_warmup_requests` (PredictionLogs)
before it serves, so the first real requests do not pay for graph set-up; its guide asks
for requests like the ones the model will get. Instead of synthetic batches, this takes
logged Predict requests (TF Serving request logs, any file, directory, glob or prefix): a
uniform sample of at most `limit` of those whose inputs fit the exported signature (names,
dtypes, ranks, fixed dimensions, readable content), each with its model spec rewritten to
the exported model and version. The others are counted by reason; reading damage is
counted as the log reader does. TF-free: it reads and writes PredictionLogs only.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmnist.errors import UserError
from fmnist.export.config import ExportConfig
from fmnist.serving.wire import tensor_proto
from fmnist.serving.wire.dtypes import numpy_dtype
from fmnist.serving.wire.messages import PredictionLog
from fmnist.serving.wire.prediction_log import LogReadStats, log_files, read_prediction_logs
from fmnist.serving.wire.status import StatusError
from fmnist.serving.wire.tfrecord import write_records

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # TF Serving refuses a warm-up file with more
# Why a logged request was not used (counted in WarmupSelection.skipped).
NOT_A_PREDICT = "not_a_predict_request"
OTHER_SIGNATURE = "other_signature"
INPUTS_DO_NOT_FIT = "inputs_do_not_fit"


@dataclass
class WarmupSelection:
    """The requests chosen for a version's warm-up file, and what was passed over."""

    records: list[bytes] = field(default_factory=list)  # serialized PredictionLogs
    fitting: int = 0  # logged requests that fit the signature (records is a sample of them)
    reading: LogReadStats = field(default_factory=LogReadStats)
    skipped: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        skipped = self.reading.skipped + self.skipped
        passed = ", ".join(f"{reason} {n:,}" for reason, n in sorted(skipped.items()))
        files = f"{self.reading.files:,} file{'s' * (self.reading.files != 1)}"
        detail = f"; skipped: {passed}" if passed else ""
        return (
            f"warm-up: {len(self.records):,} logged requests of {self.fitting:,} that fit "
            f"({self.reading.records:,} read from {files}{detail})"
        )

    def write(self, version_dir: Path) -> Path:
        path = version_dir / WARMUP_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        write_records(path, self.records)
        return path


def select_warmup_requests(
    logs: Sequence[str | os.PathLike],
    *,
    model_name: str,
    version: int,
    signature_name: str,
    inputs: dict[str, dict[str, Any]],
    limit: int,
    seed: int = 0,
) -> WarmupSelection:
    """At most `limit` (1 to MAX_WARMUP_RECORDS) logged Predict requests that fit `inputs`
    ({name: {dtype, shape}}, -1 for any size), in log order, rewritten for `model_name`
    version `version`. A UserError when none fits: an empty warm-up file warms nothing."""
    selection = WarmupSelection()
    chosen: list[tuple[int, Any]] = []
    rng = random.Random(seed)
    files = [path for spec in logs for path in log_files(spec)]
    for _, entry in read_prediction_logs(files, selection.reading):
        reason = _misfit(entry, signature_name, inputs)
        if reason:
            selection.skipped[reason] += 1
            continue
        selection.fitting += 1
        if len(chosen) < limit:  # a uniform sample of a stream of unknown length
            chosen.append((selection.fitting, entry.predict_log.request))
        else:
            slot = rng.randrange(selection.fitting)
            if slot < limit:
                chosen[slot] = (selection.fitting, entry.predict_log.request)
    if not chosen:
        wanted = ", ".join(f"{name} {s['dtype']} {s['shape']}" for name, s in inputs.items())
        raise UserError(
            f"--warmup-from: no logged Predict request fits the {signature_name} signature "
            f"({wanted}); " + selection.summary().removeprefix("warm-up: ")
        )
    for _, request in sorted(chosen, key=lambda item: item[0]):
        warmup = PredictionLog()
        warmup.predict_log.request.CopyFrom(request)
        spec = warmup.predict_log.request.model_spec
        spec.Clear()
        spec.name, spec.signature_name = model_name, signature_name
        spec.version.value = version
        selection.records.append(warmup.SerializeToString())
    return selection


def _misfit(entry: Any, signature_name: str, inputs: dict[str, dict[str, Any]]) -> str | None:
    """Why a logged record cannot warm up this signature, or None if it can."""
    if entry.WhichOneof("log_type") != "predict_log":
        return NOT_A_PREDICT
    request = entry.predict_log.request
    if request.model_spec.signature_name not in ("", signature_name):
        return OTHER_SIGNATURE
    if set(request.inputs) != set(inputs):
        return INPUTS_DO_NOT_FIT
    for name, spec in inputs.items():
        proto = request.inputs[name]
        try:
            array = tensor_proto.to_ndarray(proto)
        except StatusError:
            return INPUTS_DO_NOT_FIT
        if numpy_dtype(proto.dtype) != np.dtype(spec["dtype"]):
            return INPUTS_DO_NOT_FIT
        shape = list(spec["shape"])
        if array.ndim != len(shape) or any(
            want not in (-1, got) for want, got in zip(shape, array.shape, strict=True)
        ):
            return INPUTS_DO_NOT_FIT
    return None


def logged_warmup(
    config: ExportConfig, version: int, signature_name: str, inputs: dict[str, dict[str, Any]]
) -> WarmupSelection | None:
    """The warm-up requests `config.warmup_from` gives version `version`, or None (no logs
    given: export writes its synthetic ones)."""
    if not config.warmup_from:
        return None
    return select_warmup_requests(
        config.warmup_from,
        model_name=config.name,
        version=version,
        signature_name=signature_name,
        inputs=inputs,
        limit=config.warmup_count,
        seed=config.seed,
    )
