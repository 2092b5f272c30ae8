"""A served model's signatures as plain data: what the REST API, request validation and
batching read, the same for a SavedModel's SignatureDefs and a TFLite model's tensors.

`Signature` mirrors a SignatureDef: method name, and input/output aliases mapped to a tensor
name, DataType and shape. `from_signature_def` and `to_signature_def` convert from and to
the SignatureDef message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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


def from_tensor_info(info: Any) -> TensorInfo:
    """From a TensorInfo message (ours or TensorFlow's)."""
    shape = info.tensor_shape
    dims = None if shape.unknown_rank else tuple(int(d.size) for d in shape.dim)
    return TensorInfo(name=info.name, dtype=int(info.dtype), shape=dims)


def from_signature_def(signature_def: Any) -> Signature:
    """From a SignatureDef message (ours or TensorFlow's); its defaults are not kept."""
    return Signature(
        method_name=signature_def.method_name,
        inputs={a: from_tensor_info(i) for a, i in signature_def.inputs.items()},
        outputs={a: from_tensor_info(i) for a, i in signature_def.outputs.items()},
    )


def to_signature_def(signature: Signature) -> Any:
    """The SignatureDef message of a signature (the project's `messages.SignatureDef`)."""
    from fmnist.serving.wire.messages import SignatureDef

    proto = SignatureDef(method_name=signature.method_name)
    for field_map, infos in ((proto.inputs, signature.inputs), (proto.outputs, signature.outputs)):
        for alias, info in infos.items():
            field_map[alias].name = info.name
            field_map[alias].dtype = info.dtype
            if info.shape is None:
                field_map[alias].tensor_shape.unknown_rank = True
            for size in info.shape or ():
                field_map[alias].tensor_shape.dim.add(size=size)
    return proto
