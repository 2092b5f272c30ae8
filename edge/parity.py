"""Edge parity: the TFLite model on the bundle's test set against its float reference."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from fmnist.edge.classifier import Classifier
from fmnist.edge.runtime import Runtime, select_runtime
from fmnist.manifest import Manifest, load_manifest
from fmnist.parity import ParityResult, Tolerance, compare
from fmnist.parity_data import parity_batches

BATCH_SIZE = 1000  # images per interpreter call: a few MB of input even at 96x96x3


@dataclass(frozen=True)
class ParityRun:
    """A parity check with the arrays it compared, for callers that report more than the
    verdict (the pipeline's confusion matrices) without running the model again."""

    result: ParityResult
    probabilities: np.ndarray  # the TFLite model's, float32 [N, C]
    reference: np.ndarray  # the float model's, from the bundle, float32 [N, C]
    labels: np.ndarray  # the test labels, [N]


def run_parity(
    bundle: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    tolerance: Tolerance | None = None,
    *,
    kind: str = "int8",
    num_threads: int | None = None,
    runtime: Runtime | None = None,
    probe: bool = False,
) -> ParityResult:
    """Classify the bundle's test images with the bundle's `kind` model and compare.

    The tolerance defaults to the one export used (recorded in the manifest); `probe`
    tries the model in a child process first (see Classifier).
    """
    return measure_parity(
        bundle,
        data_dir,
        tolerance,
        kind=kind,
        num_threads=num_threads,
        runtime=runtime,
        probe=probe,
    ).result


def measure_parity(
    bundle: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    tolerance: Tolerance | None = None,
    *,
    kind: str = "int8",
    num_threads: int | None = None,
    runtime: Runtime | None = None,
    probe: bool = False,
) -> ParityRun:
    """`run_parity`, keeping the probabilities, reference and labels it compared."""
    manifest = load_manifest(bundle)
    model = manifest.tflite(kind)
    model_path = manifest.verify_file(model.file)
    reference = manifest.load_reference()
    runtime = runtime or select_runtime()
    classifier = Classifier(
        model_path,
        num_threads=num_threads,
        runtime=runtime,
        contract=manifest.contract,
        probe=probe,
    )
    start = time.perf_counter()
    probabilities, labels = _classify_test_set(classifier, manifest, data_dir)
    seconds = time.perf_counter() - start
    result = compare(
        reference,
        probabilities,
        labels,
        manifest.contract.class_names,
        tolerance or manifest.tolerance,
        name=f"{kind} TFLite on {runtime}",
        details={
            "model": f"{manifest.model_name} v{manifest.model_version} {model.path.name}",
            "runtime": str(runtime),
            "threads": num_threads,
            "seconds": round(seconds, 3),
        },
    )
    return ParityRun(result, probabilities, reference, labels)


def _classify_test_set(
    classifier: Classifier, manifest: Manifest, data_dir: str | os.PathLike | None
) -> tuple[np.ndarray, np.ndarray]:
    """The model's probabilities on the bundle's test split, streamed; and its labels."""
    labels, batches = parity_batches(manifest, data_dir, BATCH_SIZE)
    probabilities = [classifier.predict_proba(images, BATCH_SIZE) for images in batches]
    return np.concatenate(probabilities), labels
