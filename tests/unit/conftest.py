"""Bundles built from plain files (no TensorFlow): enough for the manifest's contracts."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fmnist.manifest import REFERENCE_NAME, write_manifest

CLASS_NAMES = [f"class{i}" for i in range(10)]
NUM_EXAMPLES = 50


def _spec(dtype: str, shape: list[int], **quant: Any) -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, **quant}


FIELDS: dict[str, Any] = {
    "model_name": "fashion_mnist",
    "model_version": 1,
    "created_at": "2026-01-01T00:00:00+00:00",
    "producer": {"fmnist-deploy": "0.1.0"},
    "class_names": CLASS_NAMES,
    "saved_model": {
        "signature_name": "serving_default",
        "inputs": {"images": _spec("uint8", [-1, 28, 28])},
        "outputs": {"probabilities": _spec("float32", [-1, 10])},
    },
    "float_metrics": {"accuracy": 0.9, "per_class": []},
    "tflite": {
        "int8": {
            "file": "model_int8.tflite",
            "input": _spec("uint8", [-1, 28, 28, 1], scale=1 / 255, zero_point=0),
            "output": _spec("int8", [-1, 10], scale=1 / 256, zero_point=-128),
            "metrics": {},
            "parity": {},
        }
    },
    "tolerance": {"max_accuracy_drop_pp": 0.5, "min_agreement": 0.99},
    "reference": {
        "file": REFERENCE_NAME,
        "split": "test",
        "num_examples": NUM_EXAMPLES,
        "labels_sha256": "0" * 64,
    },
}


@pytest.fixture
def fields() -> dict[str, Any]:
    """Manifest fields export would write (a fresh deep copy per test)."""
    return copy.deepcopy(FIELDS)


def reference_probabilities(seed: int = 0) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(size=(NUM_EXAMPLES, len(CLASS_NAMES)))
    probs = np.exp(logits)
    return (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def reference() -> np.ndarray:
    """Valid reference outputs: float32 probabilities [50, 10]."""
    return reference_probabilities()


@pytest.fixture
def make_bundle(tmp_path: Path) -> Callable[..., Path]:
    """make_bundle(write_reference=None) -> a bundle directory with a manifest whose
    checksums cover whatever `write_reference(path, valid_probabilities)` wrote as the
    reference outputs (as a tamperer who updates the checksums would)."""

    def make(write_reference: Callable[[Path, np.ndarray], None] | None = None) -> Path:
        bundle = tmp_path / "bundle"
        bundle.mkdir()
        (bundle / "model_int8.tflite").write_bytes(b"\0\0\0\0TFL3 not a real model")
        if write_reference is None:
            np.savez_compressed(bundle / REFERENCE_NAME, probabilities=reference_probabilities())
        else:
            write_reference(bundle / REFERENCE_NAME, reference_probabilities())
        write_manifest(bundle, copy.deepcopy(FIELDS))
        return bundle

    return make


def _answers(top: np.ndarray) -> np.ndarray:
    probs = np.full((len(top), len(CLASS_NAMES)), 0.02, np.float32)
    probs[np.arange(len(top)), top] = 0.82
    return probs


@pytest.fixture
def make_version(tmp_path: Path) -> Callable[..., Path]:
    """make_version(version, accuracy=0.9, recall=None, top=None, labels_sha="0"*64) -> the
    version directory `tmp_path/base/fashion_mnist/<version>`: a bundle whose manifest holds
    test metrics with per-class recall (10 x 0.9 by default) and whose reference outputs
    answer class `top[i]` for test image i (default i mod 10); labels_sha None leaves the
    labels checksum out, as manifests before it did."""

    def make(
        version: int,
        *,
        accuracy: float = 0.9,
        recall: list[float] | None = None,
        top: np.ndarray | None = None,
        labels_sha: str | None = "0" * 64,
    ) -> Path:
        directory = tmp_path / "base" / "fashion_mnist" / str(version)
        directory.mkdir(parents=True)
        (directory / "model_int8.tflite").write_bytes(b"\0\0\0\0TFL3 not a real model")
        top = np.arange(NUM_EXAMPLES) % len(CLASS_NAMES) if top is None else top
        np.savez_compressed(directory / REFERENCE_NAME, probabilities=_answers(top))
        data = copy.deepcopy(FIELDS)
        data["model_version"] = version
        data["float_metrics"] = {
            "accuracy": accuracy,
            "macro_f1": accuracy - 0.01,
            "per_class": [
                {"class_name": name, "recall": r, "support": 5}
                for name, r in zip(CLASS_NAMES, recall or [0.9] * len(CLASS_NAMES), strict=True)
            ],
        }
        if labels_sha is None:
            del data["reference"]["labels_sha256"]
        else:
            data["reference"]["labels_sha256"] = labels_sha
        write_manifest(directory, data)
        return directory

    return make


@pytest.fixture
def bless() -> Callable[..., None]:
    """bless(version_dir, blessed=True, baseline=1): record a comparison verdict for the
    bundle as it is now (baseline None: a first version)."""
    from fmnist.dataset import sha256_file
    from fmnist.rollout.blessing import record_comparison

    def write(directory: Path, *, blessed: bool = True, baseline: int | None = 1) -> None:
        manifest = directory / "manifest.json"
        record_comparison(
            directory,
            model_name="fashion_mnist",
            model_version=int(directory.name),
            manifest_sha256=sha256_file(manifest) if manifest.is_file() else None,
            blessed=blessed,
            baseline=None
            if baseline is None
            else {"version": baseline, "manifest_sha256": "0" * 64},
            comparison={"failures": [] if blessed else ["accuracy changed -0.01"]},
        )

    return write
