"""Served-model parity: the bundle's test images through TF Serving's public API, streamed in
batches and compared with the float reference outputs in the bundle (same maths as export and
edge), for any number of classes."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmnist.errors import ManifestError, UserError
from fmnist.layout import list_versions
from fmnist.manifest import MANIFEST_NAME, Manifest, load_manifest
from fmnist.parity import ParityResult, Tolerance, compare
from fmnist.parity_data import parity_batches
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
    """Stream the bundle's test set to the served model and compare with its float reference.

    `bundle` is a version directory, or the model directory (then the bundle of the version
    that answers is used). The version that answers is asked first (model metadata) and
    every batch is pinned to it, so a rollout during the check cannot mix two models. The
    tolerance defaults to the one export used (recorded in the manifest);
    `max_accuracy_drop_pp` / `min_agreement` / `max_class_recall_drop_pp` override parts of it.
    """
    answering = version if version is not None else _serving_version(client, label)
    manifest = load_manifest(bundle) if is_bundle(bundle) else resolve_bundle(bundle, answering)
    reference = manifest.load_reference()  # fail before sending any image
    start = time.perf_counter()
    served = _predict_test_set(
        client, manifest, data_dir, answering, label, batch_size or client.batch_size
    )
    seconds = time.perf_counter() - start
    # A SavedModel and a current model.tflite answer alike: the client cannot tell them apart.
    kind = "TFLite int8" if served.output == "scores" else "served model"
    return compare(
        reference,
        served.probabilities,
        served.labels,
        manifest.contract.class_names,
        (tolerance or manifest.tolerance).with_overrides(
            max_accuracy_drop_pp, min_agreement, max_class_recall_drop_pp
        ),
        name=f"{kind} over {client.api}",
        details=_details(client, manifest, served, version, label, seconds),
    )


def _details(client, manifest: Manifest, served, version, label, seconds: float) -> dict:
    """What the report says besides the figures: who was asked, who answered, how fast."""
    requested = (
        f"version {version}" if version is not None else f"label {label}" if label else "latest"
    )
    return {
        "endpoint": client.endpoint,
        "model": client.model_name,
        "requested": requested,
        "answered_version": served.version,
        "bundle": f"{manifest.model_name} v{manifest.model_version}",
        "wall_time_s": round(seconds, 3),
        "images_per_s": round(len(served.labels) / seconds, 1),
    }


def _serving_version(client: GrpcClient | RestClient, label: str | None) -> int | None:
    """The version the unpinned (or label) path serves now, if the metadata says."""
    spec = client.metadata(label=label).get("model_spec", {})
    return int(spec["version"]) if spec.get("version") else None


@dataclass
class _Served:
    probabilities: np.ndarray  # float32 [N, C]
    labels: np.ndarray  # int64 [N], checked against the bundle's
    version: int | None
    output: str  # "probabilities", or a TFLite int8 model's "scores"


def _predict_test_set(
    client: GrpcClient | RestClient,
    manifest: Manifest,
    data_dir: str | os.PathLike | None,
    version: int | None,
    label: str | None,
    batch_size: int,
) -> _Served:
    """The served model's answers to the test set, one request per batch (all pinned to
    `version` when known, else all must be answered by one version)."""
    # A version served from its model.tflite (--prefer_tflite_model) may answer int8 scores.
    int8 = manifest.tflite("int8").output if "int8" in manifest.tflite_kinds else None
    dequantize = Dequantize(int8.scale, int8.zero_point) if int8 and int8.scale else None
    labels, batches = parity_batches(manifest, data_dir, batch_size)
    parts, versions, output = [], set(), "probabilities"
    for images in batches:
        prediction = client.predict(
            images,
            version=version,
            label=None if version is not None else label,
            batch_size=batch_size,
            dequantize=dequantize,
        )
        parts.append(prediction.probabilities)
        versions.add(prediction.model_version)
        output = prediction.output
    if len(versions) > 1:
        raise UserError(
            f"the test set was answered by versions {sorted(versions, key=str)} (the model "
            "changed during the check); pin a version or a label"
        )
    answered = versions.pop() if versions else version
    return _Served(np.concatenate(parts), labels, answered, output)
