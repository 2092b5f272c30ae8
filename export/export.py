"""Turn a training run or a user's Keras model (export/source.py) into a published bundle:
SavedModel version, TFLite models, manifest, all shaped by the input contract.

    B/NAME/N/saved_model.pb, variables/, assets.extra/tf_serving_warmup_requests
    B/NAME/N/model_float32.tflite, model_int8.tflite
    B/NAME/N/model.tflite               the int8 model answering probabilities and class_ids:
                                        TF Serving's --prefer_tflite_model
    B/NAME/N/reference_outputs.npz      float probabilities on the test set (parity)
    (with --flip-average every model and the reference average image and mirror image)
    B/NAME/N/manifest.json              written last; the contract later stages read
    B/models.config                     TF Serving's model config, updated after publishing

Everything is built in a hidden staging directory and renamed into place only after
the SavedModel matches the Keras model and both TFLite models pass the parity tolerance.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from fmnist import __version__, dataset
from fmnist.contract import InputContract
from fmnist.edge.classifier import read_model
from fmnist.edge.runtime import select_runtime
from fmnist.errors import EXIT_PARITY_FAILED, UserError
from fmnist.export import saved_model, tflite
from fmnist.export.config import ExportConfig
from fmnist.export.flip_average import flip_averaged
from fmnist.export.int8_check import (
    NotFullInteger,
    check_full_integer,
    conversion_error,
    layer_names,
)
from fmnist.export.model_config import CONFIG_NAME, read_config, update_models_config
from fmnist.export.publish import check_writable, next_version, staged_version
from fmnist.export.source import ExportSource, TestSplit, from_run
from fmnist.export.tflite_run import tflite_probabilities
from fmnist.export.tflite_serving import serving_model
from fmnist.export.warmup_from_logs import WarmupSelection, logged_warmup
from fmnist.layout import list_versions
from fmnist.manifest import REFERENCE_NAME, Manifest, write_manifest
from fmnist.metrics import compute_metrics
from fmnist.parity import ParityResult, compare, format_result
from fmnist.run_dir import RunDir

SAVED_MODEL_ATOL = 1e-5
DEBUG_DIR = "quantization_debug"
Progress = Callable[[str], None]
SKIP_INT8_HINT = "--skip-int8 publishes the SavedModel and float32 TFLite without it"


class ParityRefused(UserError):
    """A TFLite model drifted beyond the tolerance; nothing was published. `parity` holds
    the checks that were made."""

    exit_code = EXIT_PARITY_FAILED

    def __init__(self, message: str, parity: dict[str, ParityResult] | None = None) -> None:
        super().__init__(message)
        self.parity = parity or {}


@dataclass
class ExportResult:
    bundle_dir: Path
    version: int
    manifest: Manifest
    parity: dict[str, ParityResult]
    models_config: Path
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Preflight:
    """What export settles before any work: the version, and logged warm-up requests."""

    version: int
    warmup: WarmupSelection | None


def preflight(config: ExportConfig, contract: InputContract) -> Preflight:
    """Fail before any work on a base path, version or warm-up logs that cannot be used."""
    check_writable(config.base_path)
    read_config(config.base_path / CONFIG_NAME)  # a broken models.config fails here
    version = config.version or next_version(config.model_dir)
    existing = list_versions(config.model_dir).get(version)
    if existing is not None:
        raise UserError(
            f"{existing}: version {version} already exists; "
            "it is never overwritten (omit --version to take the next one)"
        )
    # --warmup-from: logged requests for the warm-up file; bad logs fail before any work.
    inputs = saved_model.input_spec(contract)
    return Preflight(version, logged_warmup(config, version, saved_model.SIGNATURE, inputs))


def export_run(run_dir: str | Path, config: ExportConfig, progress: Progress = lambda _: None):
    """Export RUN/model.keras as version N of `config.name` under `config.base_path`."""
    run = RunDir(run_dir).check()
    checked = preflight(config, run.contract())
    clock = time.perf_counter()
    source = from_run(run.path, config.data_dir, config.calibration_size, config.seed)
    load_s = time.perf_counter() - clock
    result = export_source(source, config, checked, run.path / DEBUG_DIR, progress)
    result.timings["load_and_reference_s"] += load_s
    return result


def export_keras_model(
    model_path: str | Path,
    config: ExportConfig,
    *,
    scaling: str,
    softmax: bool = False,
    progress: Progress = lambda _: None,
) -> ExportResult:
    """Export a Keras classifier trained anywhere, with `config.data_dir`'s test and
    calibration images; the user says how its pixels are scaled."""
    from fmnist.export.keras_model import from_keras_model

    if config.data_dir is None:
        raise UserError("--keras-model needs --data-dir: its test images and class names")
    check_writable(config.base_path)
    read_config(config.base_path / CONFIG_NAME)  # a broken models.config fails before loading
    clock = time.perf_counter()
    source = from_keras_model(
        model_path,
        config.data_dir,
        scaling,
        softmax=softmax,
        calibration_size=config.calibration_size,
        seed=config.seed,
    )
    load_s = time.perf_counter() - clock
    checked = preflight(config, source.contract)
    debug_dir = Path(model_path).with_name(Path(model_path).stem + "_" + DEBUG_DIR)
    result = export_source(source, config, checked, debug_dir, progress)
    result.timings["load_and_reference_s"] += load_s
    return result


def export_source(
    source: ExportSource,
    config: ExportConfig,
    checked: Preflight,
    debug_dir: Path,
    progress: Progress = lambda _: None,
) -> ExportResult:
    """Publish `source` as version `checked.version`: build it in a staging directory, gate
    it on parity, rename it into place, then update models.config."""
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    # The float model the bundle serves, and every parity check compares with.
    served = flip_averaged(source.model) if config.int8.flip_average else source.model
    variant = " with test-time flip averaging" if config.int8.flip_average else ""
    where = source.origin.get("path", "the model")
    progress(f"exporting {where} as {config.name} version {checked.version}{variant}")
    progress(f"input: {source.contract.describe()}")
    reference = _predict(served, source.test, source.contract)
    timings["load_and_reference_s"] = time.perf_counter() - clock
    with staged_version(config.model_dir, checked.version) as staging:
        args = (staging, source, served, reference, config, checked, debug_dir, progress)
        fields, parity, build_timings = _build(*args)
        manifest = write_manifest(staging, fields)
    bundle_dir = config.model_dir / str(checked.version)
    return ExportResult(
        bundle_dir=bundle_dir,
        version=checked.version,
        manifest=dataclasses.replace(manifest, bundle_dir=bundle_dir),  # renamed from staging
        parity=parity,
        models_config=_update_models_config(config, checked.version, bundle_dir),
        timings=timings | build_timings,
    )


def _predict(model: Any, test: TestSplit, contract: InputContract) -> np.ndarray:
    """The float model's probabilities for the test images, scaled by the contract's rule."""
    return np.concatenate(
        [
            np.asarray(model.predict(contract.scale(images), batch_size=len(images), verbose=0))
            for images in test.batches()
        ]
    ).astype(np.float32, copy=False)


def _build(
    staging: Path,
    source: ExportSource,
    served: Any,
    reference: np.ndarray,
    config: ExportConfig,
    checked: Preflight,
    debug_dir: Path,
    progress: Progress,
) -> tuple[dict[str, Any], dict[str, ParityResult], dict[str, float]]:
    """Every file of the version but the manifest; the manifest's fields, parity, timings."""
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    sm_diff = _write_saved_model(staging, served, source, reference, config, checked, progress)
    timings["saved_model_s"] = time.perf_counter() - clock
    clock = time.perf_counter()
    contents = _convert(served, source, config)
    timings["convert_s"] = time.perf_counter() - clock
    clock = time.perf_counter()
    entries, parity = _judge_all(staging, contents, source, reference, config, progress)
    timings["tflite_parity_s"] = time.perf_counter() - clock
    _refuse_drift(parity, source, config, debug_dir, progress)
    # TF Serving's --prefer_tflite_model serves this: the int8 model (float32 with
    # --skip-int8), answering as the SavedModel does (export/tflite_serving.py).
    served_kind = "float32" if config.skip_int8 else "int8"
    (staging / tflite.SERVING_FILE).write_bytes(serving_model(contents[served_kind]))
    entries[served_kind]["serving_file"] = tflite.SERVING_FILE
    np.savez_compressed(staging / REFERENCE_NAME, probabilities=reference.astype(np.float32))
    float_metrics = compute_metrics(
        source.test.labels, reference.argmax(1), list(source.class_names)
    )
    fields = _manifest_fields(config, checked.version, source, float_metrics, entries, sm_diff)
    return fields, parity, timings


def _write_saved_model(
    staging: Path,
    served: Any,
    source: ExportSource,
    reference: np.ndarray,
    config: ExportConfig,
    checked: Preflight,
    progress: Progress,
) -> float:
    """The SavedModel and its warm-up requests; checked against the Keras model."""
    saved_model.write_saved_model(served, staging, source.contract)
    if checked.warmup is not None:
        checked.warmup.write(staging)
        progress(checked.warmup.summary())
    else:
        images = source.test.head(max(config.warmup_batch_sizes))
        saved_model.write_warmup(staging, config.name, images, config.warmup_batch_sizes)
    diff = _check_saved_model(staging, source.test, reference)
    progress(f"SavedModel: signature matches Keras (max |diff| {diff:.2g})")
    return diff


def _convert(served: Any, source: ExportSource, config: ExportConfig) -> dict[str, bytes]:
    """Both TFLite models; an op that keeps either from converting, or the int8 one from
    being full-integer, is a one-line error naming it and its layer."""
    names = layer_names(source.model)
    contents = {}
    try:
        contents["float32"] = tflite.convert_float32(served, source.contract)
    except Exception as err:  # the converter raises several types, with pages of MLIR
        raise conversion_error(err, "float32", names) from None
    if config.skip_int8:
        return contents
    try:
        model, contract = source.model, source.contract
        contents["int8"] = tflite.convert_int8(model, source.calibration, contract, config.int8)
    except Exception as err:
        raise conversion_error(err, "int8", names).suggest(SKIP_INT8_HINT) from None
    try:
        check_full_integer(contents["int8"], names)
    except NotFullInteger as err:
        raise err.suggest(SKIP_INT8_HINT) from None
    return contents


def _judge_all(
    staging: Path,
    contents: dict[str, bytes],
    source: ExportSource,
    reference: np.ndarray,
    config: ExportConfig,
    progress: Progress,
) -> tuple[dict[str, Any], dict[str, ParityResult]]:
    entries, parity = {}, {}
    for kind, content in contents.items():
        filename = tflite.INT8_FILE if kind == "int8" else tflite.FLOAT32_FILE
        (staging / filename).write_bytes(content)
        entries[kind], parity[kind] = _judge(staging / filename, kind, source, reference, config)
        progress(format_result(parity[kind]))
    return entries, parity


def _refuse_drift(
    parity: dict[str, ParityResult],
    source: ExportSource,
    config: ExportConfig,
    debug_dir: Path,
    progress: Progress,
) -> None:
    """Nothing is published when a TFLite model drifted; the per-layer report says where."""
    failed = [kind for kind, result in parity.items() if not result.passed]
    if "int8" not in parity or not (failed or config.debug_quantization):
        _refuse(failed, parity, "")
        return
    report = tflite.write_quantization_report(
        source.model,
        source.calibration,
        source.test.head(200),
        debug_dir,
        source.contract,
        config.int8,
    )
    progress(f"per-layer quantization report: {report}")
    _refuse(failed, parity, f"; per-layer report in {debug_dir}")


def _refuse(failed: list[str], parity: dict[str, ParityResult], report: str) -> None:
    if failed:
        raise ParityRefused(
            f"not published: {' and '.join(failed)} TFLite outside tolerance ("
            + "; ".join(f for kind in failed for f in parity[kind].failures)
            + f"){report}",
            parity,
        )


def _update_models_config(config: ExportConfig, version: int, bundle_dir: Path) -> Path:
    try:
        return update_models_config(
            config.base_path,
            config.name,
            version=version,
            label=config.label,
            num_versions=config.num_versions,
            serving_base_path=config.serving_base_path,
        )
    except (OSError, UserError) as err:
        raise UserError(
            f"published {bundle_dir}, but could not update {config.base_path / CONFIG_NAME}: {err}"
        ) from None


def _check_saved_model(path: Path, test: TestSplit, reference: np.ndarray) -> float:
    """The saved signature must reproduce the Keras model (a wrong export is never published)."""
    parts = [saved_model.signature_outputs(path, images) for images in test.batches()]
    outputs = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    diff = float(np.abs(outputs["probabilities"] - reference).max())
    if diff > SAVED_MODEL_ATOL or not np.array_equal(outputs["class_ids"], reference.argmax(1)):
        raise UserError(f"SavedModel differs from the Keras model (max |diff| {diff:.3g})")
    return diff


def _judge(
    path: Path,
    kind: str,
    source: ExportSource,
    reference: np.ndarray,
    config: ExportConfig,
) -> tuple[dict[str, Any], ParityResult]:
    """Run a TFLite model on the test set; its manifest entry and parity."""
    runtime = select_runtime()
    try:
        content = read_model(path)  # a file that is not a TFLite model, in one line
        probabilities = tflite_probabilities(
            content, source.test.batches(), source.contract, runtime
        )
    except UserError as err:  # its path is in the staging directory, about to vanish
        reason = str(err).removeprefix(f"{path}: ")
        raise UserError(f"not published: the converted {kind} TFLite model: {reason}") from None
    labels, names = source.test.labels, list(source.class_names)
    name = f"{kind} TFLite vs float (export, {runtime})"
    result = compare(reference, probabilities, labels, names, config.tolerance, name=name)
    inp, out = tflite.tensor_specs(content)
    metrics = compute_metrics(labels, probabilities.argmax(1), names)
    summary = {k: v for k, v in result.to_dict().items() if k not in ("per_class", "tolerance")}
    entry = {"file": path.name, "input": inp, "output": out, "metrics": metrics, "parity": summary}
    return entry, result


def _manifest_fields(
    config: ExportConfig,
    version: int,
    source: ExportSource,
    float_metrics: dict[str, Any],
    tflite_entries: dict[str, Any],
    saved_model_diff: float,
) -> dict[str, Any]:
    contract, test, pins = source.contract, source.test, config.int8.input_pins
    origin = {"source_run": source.origin["path"]} if source.origin.get("kind") == "run" else {}
    return origin | {
        "model_name": config.name,
        "model_version": version,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "producer": {
            "fmnist-deploy": __version__,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "tflite_converter": f"tensorflow {tf.__version__}",
            "numpy": np.__version__,
        },
        "source": dict(source.origin),
        "flip_average": config.int8.flip_average,
        "class_names": list(contract.class_names),
        "input": contract.to_dict(),
        "saved_model": {
            "signature_name": saved_model.SIGNATURE,
            "inputs": saved_model.input_spec(contract),
            "outputs": saved_model.output_specs(contract),
            "warmup_file": saved_model.WARMUP_FILE.as_posix(),
            "max_abs_diff_vs_keras": saved_model_diff,
        },
        "float_metrics": float_metrics,
        "tflite": tflite_entries,
        "calibration": {
            "split": "train",
            "num_images": len(source.calibration) + (2 if pins == "images" else 1),
            "input_pins": pins,
            "equalize_alpha": config.int8.equalize_alpha,
            "bias_correction": config.int8.bias_correction,
        },
        "tolerance": config.tolerance.to_dict(),
        "reference": {
            "file": REFERENCE_NAME,
            "split": "test",
            "num_examples": len(test),
            "labels_sha256": dataset.labels_sha256(test.labels),
        },
    }
