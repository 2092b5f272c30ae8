"""Edge parity: the TFLite model on the whole test set against the manifest's float reference."""

from __future__ import annotations

import os
import time

from fmnist import dataset
from fmnist.edge.classifier import Classifier
from fmnist.edge.runtime import Runtime, select_runtime
from fmnist.errors import ManifestError
from fmnist.manifest import load_manifest
from fmnist.parity import ParityResult, Tolerance, compare


def run_parity(
    bundle: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    tolerance: Tolerance | None = None,
    *,
    kind: str = "int8",
    num_threads: int | None = None,
    runtime: Runtime | None = None,
) -> ParityResult:
    """Classify the 10,000 test images with the bundle's `kind` model and compare.

    The tolerance defaults to the one export used (recorded in the manifest).
    """
    manifest = load_manifest(bundle)
    model = manifest.tflite(kind)
    model_path = manifest.verify_file(model.file)
    reference = manifest.load_reference()
    test = dataset.load_test(data_dir)
    expected = manifest.reference.labels_sha256
    if expected and dataset.labels_sha256(test.labels) != expected:
        raise ManifestError(
            "the test labels differ from those the bundle's reference outputs "
            "were computed on (wrong data directory?)"
        )
    runtime = runtime or select_runtime()
    classifier = Classifier(
        model_path,
        num_threads=num_threads,
        runtime=runtime,
        class_names=tuple(manifest.class_names),
    )
    start = time.perf_counter()
    probabilities = classifier.predict_proba(test.images, batch_size=1000)
    seconds = time.perf_counter() - start
    return compare(
        reference,
        probabilities,
        test.labels,
        manifest.class_names,
        tolerance or manifest.tolerance,
        name=f"{kind} TFLite on {runtime}",
        details={
            "model": f"{manifest.model_name} v{manifest.model_version} {model.path.name}",
            "runtime": str(runtime),
            "threads": num_threads,
            "seconds": round(seconds, 3),
        },
    )
