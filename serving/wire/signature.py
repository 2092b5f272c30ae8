"""A served model's signatures as plain data: what the REST API, request validation and the
metadata answers need, with no TensorFlow import (a TFLite model has no SignatureDef protos).

`Signature` mirrors a SignatureDef: method name, and input/output aliases mapped to a tensor
name, DataType and shape. A SavedModel's protos convert to it with `from_signature_def`; the
REST metadata and status JSON are built from it in the shape `json_format.MessageToDict`
gives for TF Serving's protos (tests compare the two).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fmnist.serving.wire.dtypes import dtype_name

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"


@dataclass(frozen=True)
class TensorInfo:
    """One signature tensor: graph tensor name, DataType enum, shape (None: unknown rank;
    -1: a dimension of any size)."""

    name: str
    dtype: int
    shape: tuple[int, ...] | None


@dataclass(frozen=True)
class Signature:
    method_name: str
    inputs: Mapping[str, TensorInfo] = field(default_factory=dict)
    outputs: Mapping[str, TensorInfo] = field(default_factory=dict)
    # SignatureDef.defaults (input alias -> TensorProto) as REST metadata prints them.
    defaults_json: Mapping[str, Any] = field(default_factory=dict)


def from_tensor_info(info: Any) -> TensorInfo:
    """From a TensorInfo proto (duck-typed, so this module needs no TF protos)."""
    shape = info.tensor_shape
    dims = None if shape.unknown_rank else tuple(int(d.size) for d in shape.dim)
    return TensorInfo(name=info.name, dtype=int(info.dtype), shape=dims)


def from_signature_def(signature_def: Any) -> Signature:
    """From a SignatureDef proto (duck-typed)."""
    defaults = {}
    if signature_def.defaults:
        from google.protobuf import json_format  # protobuf, not TensorFlow

        defaults = {
            alias: json_format.MessageToDict(
                proto,
                always_print_fields_with_no_presence=True,
                preserving_proto_field_name=True,
            )
            for alias, proto in signature_def.defaults.items()
        }
    return Signature(
        method_name=signature_def.method_name,
        inputs={a: from_tensor_info(i) for a, i in signature_def.inputs.items()},
        outputs={a: from_tensor_info(i) for a, i in signature_def.outputs.items()},
        defaults_json=defaults,
    )


def _tensor_info_json(info: TensorInfo) -> dict[str, Any]:
    if info.shape is None:
        shape: dict[str, Any] = {"dim": [], "unknown_rank": True}
    else:
        shape = {"dim": [{"size": str(d), "name": ""} for d in info.shape], "unknown_rank": False}
    return {"dtype": dtype_name(info.dtype), "tensor_shape": shape, "name": info.name}


def signature_def_map_json(signatures: Mapping[str, Signature]) -> dict[str, Any]:
    """A SignatureDefMap as TF Serving's REST metadata prints it (proto field names, int64
    sizes as strings, default values included)."""
    return {
        "signature_def": {
            name: {
                "inputs": {a: _tensor_info_json(i) for a, i in sig.inputs.items()},
                "outputs": {a: _tensor_info_json(i) for a, i in sig.outputs.items()},
                "method_name": sig.method_name,
                "defaults": dict(sig.defaults_json),
            }
            for name, sig in signatures.items()
        }
    }
