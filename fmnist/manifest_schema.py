"""The JSON Schema of `manifest.json` (versions 1 and 2), checked before any field is used.

Every field a later stage reads is typed here, so a tampered or truncated manifest fails
with one line naming the field (`manifest.reference.num_examples must be integer`), never
a KeyError deep inside a command. Objects the readers do not descend into (producer
details, metrics tables) stay open, so export can add information without a new version.
fastjsonschema compiles the schema to plain Python: no compiled dependencies, so it
installs on a 32-bit Raspberry Pi without piwheels.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import fastjsonschema

INT64_MAX = 2**63 - 1
DTYPES = ["bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64"]

_NAME = {"type": "string", "minLength": 1, "maxLength": 255}
_RELPATH = {"type": "string", "minLength": 1, "maxLength": 4096}
_FRACTION = {"type": "number", "minimum": 0, "maximum": 1}
_SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}

_SHAPE = {
    "type": "array",
    "minItems": 1,
    "maxItems": 8,
    "items": {"type": "integer", "minimum": -1, "maximum": 2**31 - 1},
}

_TENSOR_SPEC = {
    "type": "object",
    "required": ["dtype", "shape"],
    "properties": {
        "dtype": {"type": "string", "minLength": 1, "maxLength": 32},
        "shape": _SHAPE,
    },
}

# TFLite tensors: a numpy dtype, and quantization parameters when quantized.
_TFLITE_TENSOR = {
    "type": "object",
    "required": ["dtype", "shape"],
    "properties": {
        "dtype": {"enum": DTYPES},
        "shape": _SHAPE,
        "scale": {"type": ["number", "null"], "minimum": 0},
        "zero_point": {"type": ["integer", "null"], "minimum": -(2**31), "maximum": 2**31 - 1},
    },
}

_TFLITE_ENTRY = {
    "type": "object",
    "required": ["file", "input", "output"],
    "properties": {
        "file": _RELPATH,
        "serving_file": _RELPATH,  # int8 only: the same model as TF Serving's model.tflite
        "input": _TFLITE_TENSOR,
        "output": _TFLITE_TENSOR,
        "metrics": {"type": "object"},
        "parity": {"type": "object"},
    },
}

# The input contract (fmnist/contract.py checks the values when a stage reads it).
_INPUT = {
    "type": "object",
    "required": ["height", "width", "channels", "class_names"],
    "properties": {
        "height": {"type": "integer", "minimum": 1},
        "width": {"type": "integer", "minimum": 1},
        "channels": {"enum": [1, 3]},
        "dtype": {"const": "uint8"},
        "scaling": {"type": "string", "maxLength": 32},
        "class_names": {"type": "array", "minItems": 2, "maxItems": 1000, "items": _NAME},
    },
}

TOLERANCE_FIELDS = ("max_accuracy_drop_pp", "min_agreement")

_TOLERANCE = {
    "type": "object",
    "required": list(TOLERANCE_FIELDS),
    "additionalProperties": False,
    "properties": {
        "max_accuracy_drop_pp": {"type": "number", "minimum": 0, "maximum": 100},
        "min_agreement": _FRACTION,
        # Optional: manifests written before the per-class gate get Tolerance's default.
        "max_class_recall_drop_pp": {"type": "number", "minimum": 0, "maximum": 100},
    },
}

MANIFEST_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "fmnist-deploy manifest, schema versions 1 and 2",
    "type": "object",
    "required": [
        "schema",
        "schema_version",
        "model_name",
        "model_version",
        "created_at",
        "producer",
        "class_names",
        "saved_model",
        "float_metrics",
        "tflite",
        "tolerance",
        "reference",
        "files",
    ],
    "properties": {
        "schema": {"const": "fmnist-deploy/manifest"},
        "schema_version": {"type": "integer", "minimum": 1},
        "model_name": _NAME,
        "model_version": {"type": "integer", "minimum": 0, "maximum": INT64_MAX},
        "created_at": {"type": "string", "maxLength": 64},
        "producer": {"type": "object", "additionalProperties": {"type": "string"}},
        "flip_average": {"type": "boolean"},  # optional: bundles before it had none
        "input": _INPUT,  # optional: version 1 bundles hold 28x28x1 models
        "source": {"type": "object", "additionalProperties": {"type": "string"}},
        "class_names": {"type": "array", "minItems": 1, "maxItems": 1000, "items": _NAME},
        "saved_model": {
            "type": "object",
            "required": ["signature_name", "inputs", "outputs"],
            "properties": {
                "signature_name": _NAME,
                "inputs": {"type": "object", "additionalProperties": _TENSOR_SPEC},
                "outputs": {"type": "object", "additionalProperties": _TENSOR_SPEC},
            },
        },
        "float_metrics": {
            "type": "object",
            "required": ["accuracy"],
            "properties": {"accuracy": _FRACTION},
        },
        "tflite": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"enum": ["int8", "float32"]},
            "additionalProperties": _TFLITE_ENTRY,
        },
        "tolerance": _TOLERANCE,
        "reference": {
            "type": "object",
            "required": ["file", "split", "num_examples"],
            "properties": {
                "file": _RELPATH,
                "split": _NAME,
                "num_examples": {"type": "integer", "minimum": 1, "maximum": 10_000_000},
                "labels_sha256": _SHA256,
            },
        },
        "files": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["sha256", "bytes"],
                "additionalProperties": False,
                "properties": {
                    "sha256": _SHA256,
                    "bytes": {"type": "integer", "minimum": 0, "maximum": INT64_MAX},
                },
            },
        },
    },
}


@functools.cache
def _validator() -> Callable[[Any], Any]:
    """The schema compiled to Python once, on first use (CLIs that never read one skip it)."""
    return fastjsonschema.compile(MANIFEST_SCHEMA, use_default=False)


def schema_errors(data: Any) -> str | None:
    """None if `data` fits the schema, else the first problem, naming the field."""
    try:
        _validator()(data)
    except fastjsonschema.JsonSchemaValueException as err:
        # fastjsonschema calls the document "data"; users know it as the manifest.
        message = err.message
        return "manifest" + message[4:] if message.startswith("data") else message
    return None
