"""Turn a training run into a published bundle: SavedModel version, TFLite models, manifest.

    B/NAME/N/saved_model.pb, variables/, assets.extra/tf_serving_warmup_requests
    B/NAME/N/model_float32.tflite, model_int8.tflite
    B/NAME/N/model.tflite               the int8 model again: TF Serving's --prefer_tflite_model
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
from fmnist.dataset import FashionMNIST, subset
from fmnist.edge.classifier import Classifier, ModelError
from fmnist.edge.runtime import select_runtime
from fmnist.errors import EXIT_PARITY_FAILED, UserError
from fmnist.export import saved_model, tflite
from fmnist.export.config import ExportConfig
from fmnist.export.flip_average import flip_averaged
from fmnist.export.model_config import CONFIG_NAME, read_config, update_models_config
from fmnist.export.publish import check_writable, next_version, staged_version
from fmnist.export.warmup_from_logs import logged_warmup
from fmnist.layout import list_versions
from fmnist.manifest import REFERENCE_NAME, Manifest, write_manifest
from fmnist.metrics import compute_metrics
from fmnist.parity import ParityResult, compare, format_result
from fmnist.preprocessing import predict_probabilities
from fmnist.run_dir import RunDir

SAVED_MODEL_ATOL = 1e-5
DEBUG_DIR = "quantization_debug"


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


def export_run(
    run_dir: str | Path, config: ExportConfig, progress: Callable[[str], None] = lambda _: None
) -> ExportResult:
    """Export RUN/model.keras as version N of `config.name` under `config.base_path`."""
    run = RunDir(run_dir).check()
    run_dir = run.path
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    check_writable(config.base_path)
    read_config(config.base_path / CONFIG_NAME)  # a broken models.config fails before any work
    version = config.version or next_version(config.model_dir)
    existing = list_versions(config.model_dir).get(version)
    if existing is not None:
        raise UserError(
            f"{existing}: version {version} already exists; "
            "it is never overwritten (omit --version to take the next one)"
        )
    # --warmup-from: logged requests for the warm-up file; bad logs fail before any work.
    warmup = logged_warmup(config, version, saved_model.SIGNATURE, saved_model.INPUT)
    model = run.load_model()
    # The float model the bundle serves, and every parity check compares with.
    served = flip_averaged(model) if config.int8.flip_average else model
    data = run.load_data(config.data_dir)  # the run's split: calibration images are its own
    variant = " with test-time flip averaging" if config.int8.flip_average else ""
    progress(f"exporting {run_dir} as {config.name} version {version}{variant}")
    reference = predict_probabilities(served, data.test.images)
    float_metrics = compute_metrics(data.test.labels, reference.argmax(1), data.class_names)
    timings["load_and_reference_s"] = time.perf_counter() - clock

    with staged_version(config.model_dir, version) as staging:
        clock = time.perf_counter()
        saved_model.write_saved_model(served, staging)
        if warmup is not None:
            warmup.write(staging)
            progress(warmup.summary())
        else:
            saved_model.write_warmup(
                staging,
                config.name,
                data.test.images[: max(config.warmup_batch_sizes)],
                config.warmup_batch_sizes,
            )
        sm_diff = _check_saved_model(staging, data.test.images, reference)
        timings["saved_model_s"] = time.perf_counter() - clock
        progress(f"SavedModel: signature matches Keras (max |diff| {sm_diff:.2g})")

        clock = time.perf_counter()
        calibration = subset(data.train, config.calibration_size, config.seed).images
        contents = {
            "float32": tflite.convert_float32(served),
            "int8": tflite.convert_int8(model, calibration, config.int8),
        }
        timings["convert_s"] = time.perf_counter() - clock
        clock = time.perf_counter()
        entries, parity = {}, {}
        for kind, content in contents.items():
            filename = tflite.INT8_FILE if kind == "int8" else tflite.FLOAT32_FILE
            (staging / filename).write_bytes(content)
            entry, parity[kind] = _judge(staging / filename, kind, data, reference, config)
            entries[kind] = entry
            progress(format_result(parity[kind]))
        timings["tflite_parity_s"] = time.perf_counter() - clock
        failed = [kind for kind, result in parity.items() if not result.passed]
        if failed or config.debug_quantization:
            report = tflite.write_quantization_report(
                model,
                calibration,
                data.test.images[:200],
                run_dir / DEBUG_DIR,
                config.int8,
            )
            progress(f"per-layer quantization report: {report}")
        if failed:
            raise ParityRefused(
                f"not published: {' and '.join(failed)} TFLite outside tolerance ("
                + "; ".join(f for kind in failed for f in parity[kind].failures)
                + f"); per-layer report in {run_dir / DEBUG_DIR}",
                parity,
            )

        # TF Serving's --prefer_tflite_model serves this name: the int8 model, byte for byte.
        (staging / tflite.SERVING_FILE).write_bytes(contents["int8"])
        entries["int8"]["serving_file"] = tflite.SERVING_FILE
        np.savez_compressed(staging / REFERENCE_NAME, probabilities=reference.astype(np.float32))
        manifest = write_manifest(
            staging,
            _manifest_fields(config, version, run_dir, data, float_metrics, entries, sm_diff)
            | {
                "calibration": {
                    "split": "train",
                    "num_images": len(calibration) + 2,
                    "equalize_alpha": config.int8.equalize_alpha,
                    "bias_correction": config.int8.bias_correction,
                }
            },
        )
    bundle_dir = config.model_dir / str(version)
    try:
        models_config = update_models_config(
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
    return ExportResult(
        bundle_dir=bundle_dir,
        version=version,
        manifest=dataclasses.replace(manifest, bundle_dir=bundle_dir),  # renamed from staging
        parity=parity,
        models_config=models_config,
        timings=timings,
    )


def _check_saved_model(path: Path, images: np.ndarray, reference: np.ndarray) -> float:
    """The saved signature must reproduce the Keras model (a wrong export is never published)."""
    outputs = saved_model.signature_outputs(path, images)
    diff = float(np.abs(outputs["probabilities"] - reference).max())
    if diff > SAVED_MODEL_ATOL or not np.array_equal(outputs["class_ids"], reference.argmax(1)):
        raise UserError(f"SavedModel differs from the Keras model (max |diff| {diff:.3g})")
    return diff


def _judge(
    path: Path,
    kind: str,
    data: FashionMNIST,
    reference: np.ndarray,
    config: ExportConfig,
) -> tuple[dict[str, Any], ParityResult]:
    """Run a TFLite model on the test set with the edge runner; its manifest entry and parity."""
    runtime = select_runtime()
    # Probed in a child first: a converted model that aborts TFLite's kernels (as some int8
    # ADDs do) must be a refusal, not the end of `fmnist export` or the pipeline.
    try:
        classifier = Classifier(path, runtime=runtime, class_names=data.class_names, probe=True)
    except ModelError as err:  # its path is in the staging directory, about to vanish
        reason = str(err).removeprefix(f"{path}: ")
        raise ModelError(f"not published: the converted {kind} TFLite model: {reason}") from None
    probabilities = classifier.predict_proba(data.test.images, batch_size=1000)
    result = compare(
        reference,
        probabilities,
        data.test.labels,
        data.class_names,
        config.tolerance,
        name=f"{kind} TFLite vs float (export, {runtime})",
    )
    inp, out = tflite.tensor_specs(path.read_bytes())
    metrics = compute_metrics(data.test.labels, probabilities.argmax(1), data.class_names)
    summary = {k: v for k, v in result.to_dict().items() if k not in ("per_class", "tolerance")}
    entry = {"file": path.name, "input": inp, "output": out, "metrics": metrics, "parity": summary}
    return entry, result


def _manifest_fields(
    config: ExportConfig,
    version: int,
    run_dir: Path,
    data: FashionMNIST,
    float_metrics: dict[str, Any],
    tflite_entries: dict[str, Any],
    saved_model_diff: float,
) -> dict[str, Any]:
    return {
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
        "source_run": str(run_dir.resolve()),
        "flip_average": config.int8.flip_average,
        "class_names": list(data.class_names),
        "saved_model": {
            "signature_name": saved_model.SIGNATURE,
            "inputs": saved_model.INPUT,
            "outputs": saved_model.OUTPUTS,
            "warmup_file": saved_model.WARMUP_FILE.as_posix(),
            "max_abs_diff_vs_keras": saved_model_diff,
        },
        "float_metrics": float_metrics,
        "tflite": tflite_entries,
        "tolerance": config.tolerance.to_dict(),
        "reference": {
            "file": REFERENCE_NAME,
            "split": "test",
            "num_examples": len(data.test),
            "labels_sha256": dataset.labels_sha256(data.test.labels),
        },
    }
