"""The int8 entry's `serving_file` (TF Serving's model.tflite) is held to a checksum entry."""

from __future__ import annotations

from typing import Any

import pytest

from fmnist.errors import ManifestError
from fmnist.manifest import SCHEMA, SCHEMA_VERSION, validate

FILE = {"sha256": "a" * 64, "bytes": 10}


def _manifest(fields: dict[str, Any], files: list[str]) -> dict[str, Any]:
    fields["tflite"]["int8"]["serving_file"] = "model.tflite"
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        **fields,
        "files": {name: FILE for name in files},
    }


def test_serving_file_with_a_checksum_is_valid(fields: dict[str, Any]) -> None:
    validate(_manifest(fields, ["model_int8.tflite", "model.tflite", "reference_outputs.npz"]))


def test_serving_file_without_a_checksum_is_refused(fields: dict[str, Any]) -> None:
    data = _manifest(fields, ["model_int8.tflite", "reference_outputs.npz"])
    with pytest.raises(ManifestError, match=r"'model\.tflite' is referenced but has no checksum"):
        validate(data)
