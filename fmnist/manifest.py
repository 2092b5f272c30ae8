"""The artifact manifest: the one contract between export and every later stage.

`export` writes `manifest.json` last, inside the bundle (the SavedModel version
directory `<base>/<model>/<N>/`, which also holds the TFLite files and the float
reference outputs). Serving parity, the edge runner and CI read it through this
module, which is TF-free (numpy only) and refuses anything it cannot vouch for.

Schema, version 2 (every path is relative to the bundle, POSIX separators; version 1, from
before the input contract, has no `input` or `source` and still loads: a 28x28x1 model):

    schema            "fmnist-deploy/manifest"
    schema_version    2
    model_name        str            model_version   int
    created_at        ISO 8601 UTC   producer        {package: version}
    class_names       [str]          (the same as input.class_names)
    input             the input contract (fmnist/contract.py): {height, width, channels,
                      dtype, scaling, class_names}
    source            {kind: "run" | "keras_model", path, ...}: what was exported
    flip_average      bool, optional (absent = false): every model of the bundle and the
                      reference average an image's and its mirror image's probabilities
    saved_model       {signature_name, inputs: {name: spec}, outputs: {name: spec}, ...}
    float_metrics     {accuracy, macro_precision, macro_recall, macro_f1}
    tflite            {"int8"|"float32": {file, input: spec, output: spec, metrics, parity}}
                      (int8 also has serving_file: "model.tflite", which TF Serving's
                      --prefer_tflite_model serves from the version directory: the int8
                      model answering the SavedModel's probabilities and class_ids)
    tolerance         {max_accuracy_drop_pp, min_agreement, max_class_recall_drop_pp?}
    reference         {file, split, num_examples, labels_sha256}
    files             {path: {sha256, bytes}}   (every file in the bundle but the manifest and
                      blessing.json, which rollout writes after publishing: UNCHECKSUMMED)

A tensor spec is {dtype, shape} plus {scale, zero_point} for quantized tensors. The JSON
Schema in fmnist.manifest_schema checks all of it before any field is used; the reference
outputs are checked against the manifest (header first, then finite probabilities).
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from fmnist.contract import FASHION_MNIST, InputContract
from fmnist.dataset import labels_sha256, sha256_file
from fmnist.errors import ManifestError
from fmnist.manifest_schema import schema_errors
from fmnist.npyfile import READ_ERRORS, NpyFormatError, NpyHeader, describe_error, read_checked
from fmnist.parity import Tolerance, ToleranceError

SCHEMA = "fmnist-deploy/manifest"
SCHEMA_VERSION = 2
MANIFEST_NAME = "manifest.json"
REFERENCE_NAME = "reference_outputs.npz"
# The verdict on a published version (rollout/blessing.py), written after the manifest.
BLESSING_NAME = "blessing.json"
# Files of a version directory that describe the bundle and are not part of it: the manifest
# itself, and the blessing, which changes after publishing (each comparison and promotion
# rewrites it) and vouches for the manifest by its SHA-256 instead.
UNCHECKSUMMED = frozenset({MANIFEST_NAME, BLESSING_NAME})
TFLITE_KINDS = ("int8", "float32")
REFERENCE_ARRAY = "probabilities"
# A real manifest is ~12 KB; refuse to read a huge file into memory on a small device.
MAX_MANIFEST_BYTES = 16 * 1024 * 1024


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
class FileEntry:
    """What the manifest recorded of one bundle file."""

    sha256: str
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "bytes": self.bytes}


@dataclass(frozen=True)
class TFLiteModel:
    kind: str
    path: Path
    file: str  # path relative to the bundle, as listed in `files`
    bytes: int
    input: TensorSpec
    output: TensorSpec
    metrics: dict[str, Any]  # accuracy, macro_precision/recall/f1, per_class, on the test set
    parity: dict[str, Any]  # export's parity check, without per_class and tolerance


@dataclass(frozen=True)
class Reference:
    """Where the float model's test-set outputs are, and what they must look like."""

    file: str
    split: str
    num_examples: int
    labels_sha256: str | None


@dataclass(frozen=True)
class Manifest:
    """A validated manifest. Read it through the typed properties; `data` is the raw JSON."""

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
    def contract(self) -> InputContract:
        """What every model of the bundle takes and answers (`input`; a bundle from before
        the contract existed holds a Fashion-MNIST model with the manifest's class names)."""
        if "input" not in self.data:
            return replace(FASHION_MNIST, class_names=tuple(self.class_names))
        return InputContract.from_dict(self.data["input"], where=f"{self.path}: input")

    @property
    def tolerance(self) -> Tolerance:
        """The tolerance export gated with (the schema checked its fields' ranges too)."""
        try:
            return Tolerance.from_dict(self.data["tolerance"], source=f"{self.path}: tolerance")
        except ToleranceError as err:
            raise ManifestError(str(err)) from None

    @property
    def reference(self) -> Reference:
        ref = self.data["reference"]
        return Reference(
            file=ref["file"],
            split=ref["split"],
            num_examples=int(ref["num_examples"]),
            labels_sha256=ref.get("labels_sha256"),
        )

    @property
    def flip_average(self) -> bool:
        """Whether every model of the bundle averages an image's and its mirror's answers."""
        return bool(self.data.get("flip_average", False))

    @property
    def float_metrics(self) -> dict[str, Any]:
        return self.data["float_metrics"]

    @property
    def files(self) -> dict[str, FileEntry]:
        """Every bundle file but the manifest: relative path -> recorded size and SHA-256."""
        return {
            relpath: FileEntry(sha256=entry["sha256"], bytes=int(entry["bytes"]))
            for relpath, entry in self.data["files"].items()
        }

    @property
    def tflite_kinds(self) -> tuple[str, ...]:
        """The TFLite models in this bundle ("int8", "float32"), in manifest order."""
        return tuple(self.data["tflite"])

    def tflite(self, kind: str = "int8") -> TFLiteModel:
        if kind not in self.data["tflite"]:
            raise ManifestError(f"{self.path}: no {kind} TFLite model in this bundle")
        entry = self.data["tflite"][kind]
        return TFLiteModel(
            kind=kind,
            path=self.bundle_dir / entry["file"],
            file=entry["file"],
            bytes=int(self.data["files"][entry["file"]]["bytes"]),  # validate() checked it is there
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
        entry = self.files.get(relpath)
        if entry is None:
            raise ManifestError(f"{self.path}: {relpath} is not listed in the manifest")
        path = self.bundle_dir / relpath
        if not path.is_file():
            raise ManifestError(f"{path}: missing (listed in {MANIFEST_NAME})")
        size = path.stat().st_size
        if size != entry.bytes:
            raise ManifestError(
                f"{path}: size {size} bytes does not match the manifest's {entry.bytes}"
            )
        digest = sha256_file(path)
        if digest != entry.sha256:
            raise ManifestError(
                f"{path}: SHA-256 {digest[:16]}... does not match the manifest's "
                f"{entry.sha256[:16]}... (file altered or corrupted)"
            )
        return path

    def verify(self) -> None:
        """Check every file the manifest lists."""
        for relpath in self.files:
            self.verify_file(relpath)

    def check_labels(self, labels: np.ndarray) -> None:
        """Refuse test labels other than those the reference outputs were computed on.

        Parity against the wrong labels would measure nothing; manifests without the
        checksum (older exports) cannot be checked and are accepted.
        """
        expected = self.reference.labels_sha256
        if expected and labels_sha256(labels) != expected:
            raise ManifestError(
                "the test labels differ from those the bundle's reference outputs "
                "were computed on (wrong data directory?)"
            )

    def load_reference(self) -> np.ndarray:
        """The float model's class probabilities on the test set, float32 [N, C], verified.

        The array's header is checked against the manifest before the data is read (a
        tampered header must not make a small device allocate gigabytes), and the values
        must be probabilities: NaN means the check cannot be made, not that a model drifted.
        """
        ref = self.reference
        path = self.verify_file(ref.file)
        expected = (ref.num_examples, len(self.class_names))
        try:
            with zipfile.ZipFile(path) as npz:
                member = npz.getinfo(REFERENCE_ARRAY + ".npy")
                with npz.open(member) as stream:
                    probs = read_checked(
                        stream, member.file_size, lambda header: _check_reference(header, expected)
                    )
        except KeyError:
            raise ManifestError(f"{path}: no {REFERENCE_ARRAY!r} array in the reference") from None
        except NpyFormatError as err:
            raise ManifestError(f"{path}: unusable reference outputs: {err}") from None
        except READ_ERRORS as err:
            raise ManifestError(
                f"{path}: unreadable reference outputs ({describe_error(err)})"
            ) from None
        probs = probs.astype(np.float32)
        if not np.isfinite(probs).all():
            raise ManifestError(
                f"{path}: the reference outputs hold NaN or infinite values; "
                "parity cannot be checked against them"
            )
        if probs.size and (probs.min() < 0 or probs.max() > 1 + 1e-5):
            raise ManifestError(
                f"{path}: the reference outputs are not probabilities (values in "
                f"[{probs.min():.3g}, {probs.max():.3g}])"
            )
        return probs


def _check_reference(header: NpyHeader, expected: tuple[int, int]) -> None:
    if header.dtype.kind != "f":
        raise NpyFormatError(f"dtype {header.dtype}, expected floating point probabilities")
    if header.shape != expected:
        raise NpyFormatError(
            f"shape {list(header.shape)}, expected {list(expected)} (reference.num_examples "
            "by the number of class names)"
        )


def load_manifest(path: str | os.PathLike) -> Manifest:
    """Read and validate a manifest, given the bundle directory or the manifest file itself."""
    path = Path(path)
    manifest_path = path / MANIFEST_NAME if path.is_dir() else path
    if not manifest_path.is_file():
        raise ManifestError(f"{path}: no {MANIFEST_NAME} (not an exported bundle?)")
    try:
        size = manifest_path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise ManifestError(
                f"{manifest_path}: {size} bytes is too large for a manifest "
                f"(limit {MAX_MANIFEST_BYTES})"
            )
        data = parse_json(manifest_path.read_bytes())
    except OSError as err:
        raise ManifestError(f"{manifest_path}: unreadable: {err.strerror or err}") from None
    except ValueError as err:
        raise ManifestError(f"{manifest_path}: not valid JSON: {err}") from None
    validate(data, manifest_path)
    return Manifest(bundle_dir=manifest_path.parent, data=data)


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text[:40]} is out of range")
    return value


def parse_json(content: bytes) -> Any:
    """Strict JSON: no NaN/Infinity, no overflowing floats; any failure is a ValueError
    (including nesting deep enough to exhaust Python's recursion limit)."""
    try:
        return json.loads(
            content.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite_float
        )
    except RecursionError:
        raise ValueError("nested too deeply") from None


def validate(data: Any, where: str | os.PathLike = MANIFEST_NAME) -> None:
    """Raise ManifestError unless `data` is a well-formed manifest of a schema version we read.

    The JSON Schema (fmnist.manifest_schema) checks every field's presence and type; the
    checks here are the ones a schema cannot express (paths, cross-references).
    """
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: a manifest must be a JSON object")
    if data.get("schema") != SCHEMA:
        raise ManifestError(
            f"{where}: not an fmnist-deploy manifest (schema {str(data.get('schema'))[:80]!r})"
        )
    version = data.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        raise ManifestError(
            f"{where}: schema version {version} is newer than this "
            f"fmnist-deploy reads ({SCHEMA_VERSION}); upgrade fmnist-deploy"
        )
    problem = schema_errors(data)
    if problem:
        raise ManifestError(f"{where}: {problem}")
    for relpath in data["files"]:
        if Path(relpath).is_absolute() or ".." in Path(relpath).parts:
            raise ManifestError(f"{where}: files[{relpath!r}] must be a path inside the bundle")
        if relpath in UNCHECKSUMMED:
            raise ManifestError(f"{where}: files[{relpath!r}] is never part of a bundle")
    referenced = [data["reference"]["file"]]
    referenced += [entry["file"] for entry in data["tflite"].values()]
    referenced += [e["serving_file"] for e in data["tflite"].values() if "serving_file" in e]
    for relpath in referenced:
        if relpath not in data["files"]:
            raise ManifestError(f"{where}: {relpath!r} is referenced but has no checksum entry")


def file_entries(bundle_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """SHA-256 and size of every file under the bundle, except the manifest and the blessing."""
    bundle_dir = Path(bundle_dir)
    entries = {}
    for path in sorted(p for p in bundle_dir.rglob("*") if p.is_file()):
        relpath = path.relative_to(bundle_dir).as_posix()
        if relpath not in UNCHECKSUMMED:
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
