"""Logged Predict requests sent together: which ones may share a call, and their inputs and
logged answers stacked in one go.

Requests of the same signature, input names, dtypes and inner shapes, whose logged answers
hold the same score output, join one call; a model answers each example alone, so the
answers split back by rows. Their tensors stay as logged until the batch is sent: the
common case, `tensor_content` inputs and `float_val` scores, is stacked from the raw bytes
and values at once (decoding 10,000 small tensors one by one costs more than the server
takes to answer them); anything else is decoded on its own, with the codec's checks.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fmnist.rollout.answers import NotComparable, Rows, predict_rows, score_output
from fmnist.rollout.logs import LoggedCall
from fmnist.serving.wire import tensor_proto
from fmnist.serving.wire.dtypes import DT_STRING, numpy_dtype
from fmnist.serving.wire.status import StatusError

DT_FLOAT = 1


@dataclass
class Member:
    """A logged Predict ready to join a batch: its tensors (a TensorProto whose raw form
    was checked, or an array) and what it needs from its batch."""

    call: LoggedCall
    key: tuple  # members with the same key share a call
    signature: str
    inputs: dict[str, Any]
    scores: Any  # a TensorProto of float_val values, or an array
    score_name: str
    rows: int


def member(call: LoggedCall, output: str | None) -> Member | None:
    """The call as a batch member; None when it must go alone (an output filter, which a
    batch would not keep; inputs without one batch dimension; an answer that does not
    split by rows). NotComparable when its logged answer holds nothing to compare."""
    request = call.request
    if request.output_filter:
        return None
    inputs, sizes, shapes = {}, set(), []
    for name, proto in request.inputs.items():
        shape = _shape(proto)
        if not shape:
            return None
        inputs[name] = _checked(proto, shape)
        sizes.add(shape[0])
        shapes.append((name, proto.dtype, shape[1:]))
    if len(sizes) != 1:
        return None
    (rows,) = sizes
    outputs = call.response.outputs
    try:
        name = output or score_output({n: numpy_dtype(t.dtype) for n, t in outputs.items()})
    except StatusError as err:
        raise NotComparable(f"unreadable output tensor: {err.message}") from None
    if name not in outputs:
        raise NotComparable(f"no output {name!r} (outputs: {', '.join(sorted(outputs))})")
    logged = outputs[name]
    shape = _shape(logged)
    if not rows or shape[:1] != (rows,):
        return None
    fast = logged.dtype == DT_FLOAT and len(logged.float_val) == math.prod(shape)
    scores = logged if fast else _array(logged)
    signature = request.model_spec.signature_name or "serving_default"
    key = (signature, tuple(sorted(shapes)), name, logged.dtype, shape[1:])
    return Member(call, key, signature, inputs, scores, name, rows)


@dataclass
class Batch:
    """Members with one key, to be sent as one call."""

    members: list[Member] = field(default_factory=list)
    rows: int = 0

    def add(self, item: Member) -> None:
        self.members.append(item)
        self.rows += item.rows

    def inputs(self) -> dict[str, np.ndarray]:
        return {name: _stack([m.inputs[name] for m in self.members]) for name in self.first.inputs}

    def logged(self, quantization: tuple[float, int] | None) -> Rows:
        parts = [m.scores for m in self.members]
        if not any(isinstance(p, np.ndarray) for p in parts):  # float_val, counted
            values = itertools.chain.from_iterable(p.float_val for p in parts)
            shape = (self.rows, *_shape(parts[0])[1:])
            scores = np.fromiter(values, np.float32, math.prod(shape)).reshape(shape)
        else:
            scores = np.concatenate([_array(p) for p in parts])
        return predict_rows({self.first.score_name: scores}, self.first.score_name, quantization)

    def dtypes(self) -> dict[str, np.dtype]:
        """The logged answer's output dtypes (REST answers carry none)."""
        return {n: numpy_dtype(t.dtype) for n, t in self.first.call.response.outputs.items()}

    def wheres(self) -> list[str]:
        return [m.call.where for m in self.members for _ in range(m.rows)]

    @property
    def first(self) -> Member:
        return self.members[0]


def _shape(proto: Any) -> tuple[int, ...]:
    return tuple(d.size for d in proto.tensor_shape.dim)


def _checked(proto: Any, shape: tuple[int, ...]) -> Any:
    """`proto` itself when its `tensor_content` holds exactly what its shape needs, else its
    array (NotComparable if it cannot be read)."""
    if proto.tensor_content and proto.dtype != DT_STRING:
        try:
            itemsize = numpy_dtype(proto.dtype).itemsize
        except StatusError as err:
            raise NotComparable(f"unreadable tensor: {err.message}") from None
        if len(proto.tensor_content) == math.prod(shape) * itemsize:
            return proto
    return _array(proto)


def _array(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    try:
        return tensor_proto.to_ndarray(value)
    except StatusError as err:
        raise NotComparable(f"unreadable tensor: {err.message}") from None


def _stack(parts: list[Any]) -> np.ndarray:
    """Tensors of one name, stacked along the batch dimension."""
    if not any(isinstance(p, np.ndarray) for p in parts):  # tensor_content, checked
        shape = _shape(parts[0])
        rows = sum(_shape(p)[0] for p in parts)
        data = b"".join(p.tensor_content for p in parts)
        return np.frombuffer(data, numpy_dtype(parts[0].dtype)).reshape(rows, *shape[1:])
    return np.concatenate([_array(p) for p in parts])
