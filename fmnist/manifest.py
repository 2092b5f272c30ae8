"""The artifact manifest: the one contract between export and every later stage.

`export` writes `manifest.json` last, inside the bundle (the SavedModel version
directory `<base>/<model>/<N>/`, which also holds the TFLite files and the float
reference outputs). Serving parity, the edge runner and CI read it through this
module, which is TF-free (numpy only) and refuses anything it cannot vouch for.

Schema, version 1 (every path is relative to the bundle, POSIX separators):

    schema            "fmnist-deploy/manifest"
    schema_version    1
    model_name        str            model_version   int
    created_at        ISO 8601 UTC   producer        {package: version}
    class_names       [10 str]
    saved_model       {signature_name, inputs: {name: spec}, outputs: {name: spec}, ...}
    float_metrics     {accuracy, macro_precision, macro_recall, macro_f1}
    tflite            {"int8"|"float32": {file, input: spec, output: spec, metrics, parity}}
    tolerance         {max_accuracy_drop_pp, min_agreement}
    reference         {file, split, num_examples, labels_sha256}
    files             {path: {sha256, bytes}}   (every file in the bundle but the manifest)

A tensor spec is {dtype, shape} plus {scale, zero_point} for quantized tensors.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmnist.dataset import sha256_file
from fmnist.errors import ManifestError
from fmnist.parity import Tolerance

SCHEMA = "fmnist-deploy/manifest"
SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
REFERENCE_NAME = "reference_outputs.npz"
TFLITE_KINDS = ("int8", "float32")

_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "schema": str,
    "schema_version": int,
    "model_name": str,
    "model_version": int,
    "created_at": str,
    "producer": dict,
    "class_names": list,
    "saved_model": dict,
    "float_metrics": dict,
    "tflite": dict,
    "tolerance": dict,
    "reference": dict,
    "files": dict,
}


@dataclass(frozen=True)
class TensorSpec:
    dtype: str
    shape: tuple[int, ...]
    scale: float | None = None
    zero_point: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorSpec:
        return cls(
            dtype=str(data["dtype"]),
            shape=tuple(int(d) for d in data["shape"]),
            scale=None if data.get("scale") is None else float(data["scale"]),
            zero_point=None if data.get("zero_point") is None else int(data["zero_point"]),
        )


@dataclass(frozen=True)
class TFLiteModel:
    kind: str
    path: Path
    input: TensorSpec
    output: TensorSpec
    metrics: dict[str, Any]
    parity: dict[str, Any]


@dataclass(frozen=True)
class Manifest:
    bundle_dir: Path
    data: dict[str, Any]

    @property
    def model_name(self) -> str:
        return self.data["model_name"]

    @property
    def model_version(self) -> int:
        return self.data["model_version"]

    @property
    def class_names(self) -> list[str]:
        return list(self.data["class_names"])

    @property
    def tolerance(self) -> Tolerance:
        try:
            return Tolerance(**self.data["tolerance"])
        except TypeError:
            raise ManifestError(
                f"{self.bundle_dir / MANIFEST_NAME}: tolerance must hold exactly "
                f"max_accuracy_drop_pp and min_agreement, got {sorted(self.data['tolerance'])}"
            ) from None

    @property
    def float_metrics(self) -> dict[str, Any]:
        return self.data["float_metrics"]

    def tflite(self, kind: str = "int8") -> TFLiteModel:
        if kind not in self.data["tflite"]:
            raise ManifestError(f"{self.path}: no {kind} TFLite model in this bundle")
        entry = self.data["tflite"][kind]
        return TFLiteModel(
            kind=kind,
            path=self.bundle_dir / entry["file"],
            input=TensorSpec.from_dict(entry["input"]),
            output=TensorSpec.from_dict(entry["output"]),
            metrics=entry.get("metrics", {}),
            parity=entry.get("parity", {}),
        )

    @property
    def path(self) -> Path:
        return self.bundle_dir / MANIFEST_NAME

    def verify_file(self, relpath: str) -> Path:
        """Check one bundle file against its recorded size and SHA-256; return its path."""
        entry = self.data["files"].get(relpath)
        if entry is None:
            raise ManifestError(f"{self.path}: {relpath} is not listed in the manifest")
        path = self.bundle_dir / relpath
        if not path.is_file():
            raise ManifestError(f"{path}: missing (listed in {MANIFEST_NAME})")
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise ManifestError(
                f"{path}: size {size} bytes does not match the manifest's {entry['bytes']}"
            )
        digest = sha256_file(path)
        if digest != entry["sha256"]:
            raise ManifestError(
                f"{path}: SHA-256 {digest[:16]}... does not match the manifest's "
                f"{entry['sha256'][:16]}... (file altered or corrupted)"
            )
        return path

    def verify(self) -> None:
        """Check every file the manifest lists."""
        for relpath in self.data["files"]:
            self.verify_file(relpath)

    def load_reference(self) -> np.ndarray:
        """The float model's class probabilities on the test set, float32 [N, 10], verified."""
        ref = self.data["reference"]
        path = self.verify_file(ref["file"])
        try:
            with np.load(path) as npz:
                probs = npz["probabilities"].astype(np.float32)
        except (OSError, KeyError, ValueError) as err:
            raise ManifestError(f"{path}: unreadable reference outputs: {err}") from None
        expected = (int(ref["num_examples"]), len(self.class_names))
        if probs.shape != expected:
            raise ManifestError(f"{path}: reference shape {probs.shape}, expected {expected}")
        return probs


def load_manifest(path: str | os.PathLike) -> Manifest:
    """Read and validate a manifest, given the bundle directory or the manifest file itself."""
    path = Path(path)
    manifest_path = path / MANIFEST_NAME if path.is_dir() else path
    if not manifest_path.is_file():
        raise ManifestError(f"{path}: no {MANIFEST_NAME} (not an exported bundle?)")
    try:
        data = json.loads(manifest_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ManifestError(f"{manifest_path}: not valid JSON: {err}") from None
    validate(data, manifest_path)
    return Manifest(bundle_dir=manifest_path.parent, data=data)


def validate(data: Any, where: str | os.PathLike = MANIFEST_NAME) -> None:
    """Raise ManifestError unless `data` is a well-formed manifest of a schema version we read."""
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: a manifest must be a JSON object")
    if data.get("schema") != SCHEMA:
        raise ManifestError(
            f"{where}: not an fmnist-deploy manifest (schema {data.get('schema')!r})"
        )
    for key, kind in _REQUIRED.items():
        if key not in data:
            raise ManifestError(f"{where}: missing field {key!r}")
        if not isinstance(data[key], kind) or isinstance(data[key], bool):
            raise ManifestError(f"{where}: field {key!r} has the wrong type")
    if data["schema_version"] > SCHEMA_VERSION:
        raise ManifestError(
            f"{where}: schema version {data['schema_version']} is newer than this "
            f"fmnist-deploy reads ({SCHEMA_VERSION}); upgrade fmnist-deploy"
        )
    names = data["class_names"]
    if not names or not all(isinstance(n, str) for n in names):
        raise ManifestError(f"{where}: class_names must be a non-empty list of strings")
    for relpath, entry in data["files"].items():
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("sha256"), str)
            and isinstance(entry.get("bytes"), int)
        ):
            raise ManifestError(f"{where}: files[{relpath!r}] needs sha256 and bytes")
        if Path(relpath).is_absolute() or ".." in Path(relpath).parts:
            raise ManifestError(f"{where}: files[{relpath!r}] must be a path inside the bundle")
    referenced = [data["reference"].get("file")]
    for kind, entry in data["tflite"].items():
        if kind not in TFLITE_KINDS or not isinstance(entry, dict):
            raise ManifestError(f"{where}: unknown TFLite entry {kind!r}")
        for key in ("file", "input", "output"):
            if key not in entry:
                raise ManifestError(f"{where}: tflite.{kind} is missing {key!r}")
        referenced.append(entry["file"])
    for relpath in referenced:
        if relpath not in data["files"]:
            raise ManifestError(f"{where}: {relpath!r} is referenced but has no checksum entry")


def file_entries(bundle_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """SHA-256 and size of every file under the bundle, except the manifest itself."""
    bundle_dir = Path(bundle_dir)
    entries = {}
    for path in sorted(p for p in bundle_dir.rglob("*") if p.is_file()):
        relpath = path.relative_to(bundle_dir).as_posix()
        if relpath != MANIFEST_NAME:
            entries[relpath] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return entries


def write_manifest(bundle_dir: str | os.PathLike, fields: dict[str, Any]) -> Manifest:
    """Checksum the bundle and write its manifest; call it last, when every other file is final."""
    bundle_dir = Path(bundle_dir)
    data = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **fields}
    data["files"] = file_entries(bundle_dir)
    validate(data, bundle_dir / MANIFEST_NAME)
    tmp = bundle_dir / (MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, bundle_dir / MANIFEST_NAME)
    return Manifest(bundle_dir=bundle_dir, data=data)
