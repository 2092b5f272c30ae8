"""TensorProto <-> numpy, as TF Serving's gRPC API carries tensors.

Responses fill the typed `*_val` fields (TF Serving's default `AsProtoField` serialization,
so clients reading `float_val` work); requests may use `tensor_content` or the typed fields.
The message type is the project's own (`messages.TensorProto`); reading works on TF's too.
"""

from __future__ import annotations

import numpy as np

from fmnist.serving.wire.dtypes import (
    DT_HALF,
    DT_STRING,
    VALUE_FIELD,
    check_dims,
    dtype_name,
    dtype_of,
    format_shape,
    numpy_dtype,
    supported_numpy,
)
from fmnist.serving.wire.messages import TensorProto
from fmnist.serving.wire.status import Code, StatusError, invalid_argument

_FILL_PIECE = 1 << 16  # values per list when writing typed fields


def to_ndarray(
    proto: TensorProto, max_bytes: int | None = None, *, name: str | None = None
) -> np.ndarray:
    """A request tensor as numpy, by TF's rules (a short value list repeats its last value,
    an empty one means zeros).

    Checked before anything is allocated: the rank, the shape's size, `tensor_content`
    against the shape, and `max_bytes`, which bounds what a short value list may expand to,
    so a small message declaring a huge shape is refused. Errors are INVALID_ARGUMENT,
    as TF Serving's "tensor parsing error: <name>"."""
    try:
        return _to_ndarray(proto, max_bytes)
    except StatusError as err:
        if name is None or err.code != Code.INVALID_ARGUMENT:
            raise
        raise invalid_argument(f"tensor parsing error: {name}: {err.message}") from None


def _to_ndarray(proto: TensorProto, max_bytes: int | None) -> np.ndarray:
    dtype = numpy_dtype(proto.dtype)
    if proto.tensor_shape.unknown_rank:
        raise invalid_argument("request tensors must have a known shape")
    shape = tuple(d.size for d in proto.tensor_shape.dim)
    size = check_dims(shape, dtype.itemsize)
    needed = size * dtype.itemsize
    content = proto.tensor_content  # read once: each read copies the bytes
    if content:
        if proto.dtype == DT_STRING:
            raise invalid_argument("DT_STRING tensors cannot use tensor_content")
        if len(content) != needed:
            raise invalid_argument(
                f"tensor_content holds {len(content)} bytes but shape "
                f"{format_shape(shape)} of {dtype_name(proto.dtype)} needs {needed}"
            )
        return np.frombuffer(content, dtype=dtype).reshape(shape)
    values = getattr(proto, VALUE_FIELD[proto.dtype])
    if len(values) > size:
        raise invalid_argument(f"tensor has {len(values)} values but shape {format_shape(shape)}")
    if max_bytes is not None and needed > max_bytes:
        # TF would expand the values to the shape and fail to allocate: a parsing error.
        raise invalid_argument(
            f"{len(values)} values of {dtype_name(proto.dtype)} do not fill shape "
            f"{format_shape(shape)} ({needed} bytes); a request tensor is "
            f"limited to {max_bytes} bytes"
        )
    if proto.dtype == DT_STRING:
        flat = np.empty(len(values), dtype=object)
        flat[:] = list(values)
    elif proto.dtype == DT_HALF:
        flat = np.array(values, dtype=np.uint16).view(np.float16)
    elif dtype.kind in "iu":
        # int_val carries int8..uint16 as int32; wrap like TF's static_cast does.
        flat = np.array(values, dtype=np.int64 if dtype != np.uint64 else np.uint64).astype(dtype)
    else:
        flat = np.array(values, dtype=dtype)
    if 0 < len(flat) < size:
        flat = np.concatenate([flat, np.full(size - len(flat), flat[-1], dtype=flat.dtype)])
    elif len(flat) == 0 and size:
        flat = np.zeros(size, dtype=dtype) if proto.dtype != DT_STRING else _empty_bytes(size)
    return flat.reshape(shape)


def _empty_bytes(size: int) -> np.ndarray:
    flat = np.empty(size, dtype=object)
    flat[:] = [b""] * size
    return flat


def fill_tensor_proto(array: np.ndarray, proto: TensorProto) -> None:
    """Write a result into `proto` the way TF Serving does by default (typed value fields)."""
    if not supported_numpy(array.dtype):  # e.g. bfloat16, complex
        import tensorflow as tf  # only for dtypes TF Serving's typed fields lack

        proto.ParseFromString(tf.make_tensor_proto(array).SerializeToString())
        return
    dt = dtype_of(array)
    proto.dtype = dt
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    field = getattr(proto, VALUE_FIELD[dt])
    flat = array.ravel()
    if dt == DT_HALF:
        flat = flat.view(np.uint16)
    if dt == DT_STRING:
        field.extend(v if isinstance(v, bytes) else str(v).encode() for v in flat)
        return
    # In pieces: a large result as one Python list would cost ~32 bytes per value at once.
    for start in range(0, len(flat), _FILL_PIECE):
        field.extend(flat[start : start + _FILL_PIECE].tolist())


def to_tensor_proto(value: np.ndarray) -> TensorProto:
    """An array (numbers, bools, or bytes/str for DT_STRING) as a request TensorProto: numbers
    travel as `tensor_content`, much faster to build and parse than the typed fields."""
    array = np.asarray(value)
    proto = TensorProto()
    dt = dtype_of(array)  # StatusError for dtypes TF has no type for
    if dt == DT_STRING:
        fill_tensor_proto(array, proto)
        return proto
    proto.dtype = dt
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    proto.tensor_content = np.ascontiguousarray(array).tobytes()
    return proto
