"""Served-model parity: the 10,000 test images through TF Serving's public API, compared with
the float reference outputs in the bundle's manifest (same maths as export and edge)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from fmnist import dataset
from fmnist.errors import ManifestError
from fmnist.layout import list_versions
from fmnist.manifest import MANIFEST_NAME, Manifest, load_manifest
from fmnist.parity import ParityResult, Tolerance, compare
from fmnist.serving.client import GrpcClient, RestClient


def resolve_bundle(path: str | os.PathLike, version: int | None) -> Manifest:
    """The bundle at `path`, or, for a model directory, the bundle of `version`."""
    path = Path(path)
    if (path / MANIFEST_NAME).is_file() or path.is_file():
        return load_manifest(path)
    versions = list_versions(path)
    if not versions:
        raise ManifestError(f"{path}: neither a bundle (no {MANIFEST_NAME}) nor a model directory")
    if version is None or version not in versions:
        raise ManifestError(
            f"{path}: no bundle for version {version} (versions here: "
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
) -> ParityResult:
    """Send the test set to the served model and compare with the bundle's float reference.

    `bundle` is a version directory, or the model directory (the answering version's bundle
    is used). The tolerance defaults to the one export used (recorded in the manifest);
    `max_accuracy_drop_pp` / `min_agreement` override parts of it.
    """
    test = dataset.load_test(data_dir)
    start = time.perf_counter()
    prediction = client.predict(test.images, version=version, label=label)
    seconds = time.perf_counter() - start
    manifest = resolve_bundle(bundle, prediction.model_version)
    expected = manifest.data["reference"].get("labels_sha256")
    if expected and dataset.labels_sha256(test.labels) != expected:
        raise ManifestError(
            "the test labels differ from those the bundle's reference outputs were computed "
            "on (wrong data directory?)"
        )
    api = "gRPC" if isinstance(client, GrpcClient) else "REST"
    requested = f"version {version}" if version else f"label {label}" if label else "latest"
    return compare(
        manifest.load_reference(),
        prediction.probabilities,
        test.labels,
        manifest.class_names,
        (tolerance or manifest.tolerance).with_overrides(max_accuracy_drop_pp, min_agreement),
        name=f"SavedModel over {api}",
        details={
            "endpoint": getattr(client, "target", None) or getattr(client, "url", None),
            "model": client.model_name,
            "requested": requested,
            "answered_version": prediction.model_version,
            "bundle_version": manifest.model_version,
            "seconds": round(seconds, 3),
            "images_per_s": round(len(test) / seconds, 1),
        },
    )
