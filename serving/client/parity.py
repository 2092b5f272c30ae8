"""Served-model parity: the 10,000 test images through TF Serving's public API, compared with
the float reference outputs in the bundle's manifest (same maths as export and edge)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from fmnist import dataset
from fmnist.errors import ManifestError
from fmnist.layout import list_versions
from fmnist.manifest import MANIFEST_NAME, Manifest, load_manifest
from fmnist.parity import ParityResult, Tolerance, compare
from fmnist.serving.client import GrpcClient, RestClient
from fmnist.serving.client.base import Dequantize


def is_bundle(path: str | os.PathLike) -> bool:
    """True for a bundle (version directory with a manifest) or a manifest file."""
    path = Path(path)
    return path.is_file() or (path / MANIFEST_NAME).is_file()


def resolve_bundle(path: str | os.PathLike, version: int | None) -> Manifest:
    """The bundle at `path`, or, for a model directory `<base>/<name>`, the bundle of `version`."""
    path = Path(path)
    if is_bundle(path):
        return load_manifest(path)
    if not path.is_dir():
        raise ManifestError(f"{path}: no such bundle or model directory")
    versions = list_versions(path)
    if not versions:
        raise ManifestError(f"{path}: neither a bundle (no {MANIFEST_NAME}) nor a model directory")
    if version not in versions:
        raise ManifestError(
            f"{path}: no bundle for version {version}, which answered (versions here: "
            f"{', '.join(map(str, sorted(versions)))})"
        )
    return load_manifest(versions[version])


def run_served_parity(
    client: GrpcClient | RestClient,
    bundle: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    *,
    version: int | None = None,
    label: str | None = None,
    tolerance: Tolerance | None = None,
    max_accuracy_drop_pp: float | None = None,
    min_agreement: float | None = None,
    max_class_recall_drop_pp: float | None = None,
    batch_size: int | None = None,
) -> ParityResult:
    """Send the test set to the served model and compare with the bundle's float reference.

    `bundle` is a version directory, or the model directory (then the bundle of the version
    that answers is used). The tolerance defaults to the one export used (recorded in the
    manifest); `max_accuracy_drop_pp` / `min_agreement` /
    `max_class_recall_drop_pp` override parts of it.
    """
    test = dataset.load_test(data_dir)
    if is_bundle(bundle):
        manifest = load_manifest(bundle)  # fail before sending 10,000 images
    else:  # ask one image first: which version answers, and is there a bundle for it?
        _, answered = client.predict_raw({"images": test.images[:1]}, version=version, label=label)
        manifest = resolve_bundle(bundle, answered if version is None else version)
    manifest.check_labels(test.labels)
    reference = manifest.load_reference()

    start = time.perf_counter()
    # A version served from its model.tflite (--prefer_tflite_model) answers int8 scores.
    int8 = manifest.tflite("int8").output
    dequantize = Dequantize(int8.scale, int8.zero_point) if int8.scale else None
    prediction = client.predict(
        test.images, version=version, label=label, batch_size=batch_size, dequantize=dequantize
    )
    seconds = time.perf_counter() - start
    if not is_bundle(bundle) and prediction.model_version != manifest.model_version:
        manifest = resolve_bundle(bundle, prediction.model_version)  # changed since the probe
        reference = manifest.load_reference()

    served = "TFLite int8" if prediction.output == "scores" else "SavedModel"
    requested = (
        f"version {version}" if version is not None else f"label {label}" if label else "latest"
    )
    return compare(
        reference,
        np.asarray(prediction.probabilities),
        test.labels,
        manifest.class_names,
        (tolerance or manifest.tolerance).with_overrides(
            max_accuracy_drop_pp, min_agreement, max_class_recall_drop_pp
        ),
        name=f"{served} over {client.api}",
        details={
            "endpoint": client.endpoint,
            "model": client.model_name,
            "requested": requested,
            "answered_version": prediction.model_version,
            "bundle": f"{manifest.model_name} v{manifest.model_version}",
            "wall_time_s": round(seconds, 3),
            "images_per_s": round(len(test.labels) / seconds, 1),
        },
    )
