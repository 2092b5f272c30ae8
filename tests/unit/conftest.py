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
