"""Tensor conversions at the API edges: TensorProto <-> numpy (gRPC) and JSON <-> numpy (REST).

Both follow TF Serving: responses fill the typed `*_val` fields (its default
`AsProtoField` serialization, so clients reading `float_val` work), requests may use
either `tensor_content` or the typed fields, and JSON follows its REST rules
(`{"b64": ...}` for binary strings, NaN/Infinity allowed, floats printed shortest).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from fmnist.serving import validation
from fmnist.serving.json_fast import NumericSpan, check_deadline
from fmnist.serving.status import Code, ServingError, invalid_argument

# dtype enum -> (numpy dtype, typed TensorProto field) for the types TF Serving's APIs carry.
_TYPES: dict[int, tuple[np.dtype, str]] = {
    types_pb2.DT_FLOAT: (np.dtype(np.float32), "float_val"),
    types_pb2.DT_DOUBLE: (np.dtype(np.float64), "double_val"),
    types_pb2.DT_HALF: (np.dtype(np.float16), "half_val"),
    types_pb2.DT_INT8: (np.dtype(np.int8), "int_val"),
    types_pb2.DT_INT16: (np.dtype(np.int16), "int_val"),
    types_pb2.DT_INT32: (np.dtype(np.int32), "int_val"),
    types_pb2.DT_INT64: (np.dtype(np.int64), "int64_val"),
    types_pb2.DT_UINT8: (np.dtype(np.uint8), "int_val"),
    types_pb2.DT_UINT16: (np.dtype(np.uint16), "int_val"),
    types_pb2.DT_UINT32: (np.dtype(np.uint32), "uint32_val"),
    types_pb2.DT_UINT64: (np.dtype(np.uint64), "uint64_val"),
    types_pb2.DT_BOOL: (np.dtype(np.bool_), "bool_val"),
    types_pb2.DT_STRING: (np.dtype(object), "string_val"),
}
_DT_OF = {np_dtype: dt for dt, (np_dtype, _) in _TYPES.items() if dt != types_pb2.DT_STRING}
_FILL_PIECE = 1 << 16  # values per list when writing typed fields
SUPPORTED_DTYPES = frozenset(_TYPES)  # the DataType enums requests and responses carry
BYTES_SUFFIX = "_bytes"  # DT_STRING outputs named like this are returned as {"b64": ...}


def dtype_name(dt: int) -> str:
    return types_pb2.DataType.Name(dt) if dt in types_pb2.DataType.values() else str(dt)


def numpy_dtype(dt: int) -> np.dtype:
    if dt not in _TYPES:
        raise invalid_argument(f"tensors of type {dtype_name(dt)} are not supported")
    return _TYPES[dt][0]


def dtype_of(array: np.ndarray) -> int:
    """The DataType enum of a numpy array (object arrays hold DT_STRING bytes)."""
    if array.dtype == object or array.dtype.kind in "SU":
        return types_pb2.DT_STRING
    try:
        return _DT_OF[array.dtype]
    except KeyError:
        raise invalid_argument(f"numpy dtype {array.dtype} has no TensorFlow type") from None


# --- gRPC: TensorProto <-> numpy ---------------------------------------------------------


def to_ndarray(
    proto: tensor_pb2.TensorProto, max_bytes: int | None = None, *, name: str | None = None
) -> np.ndarray:
    """A request tensor as numpy, by TF's rules (a short value list repeats its last value,
    an empty one means zeros).

    Checked before anything is allocated: the rank, the shape's size, `tensor_content`
    against the shape, and `max_bytes`, which bounds what a short value list may expand to,
    so a small message declaring a huge shape is refused. Errors are INVALID_ARGUMENT,
    as TF Serving's "tensor parsing error: <name>"."""
    try:
        return _to_ndarray(proto, max_bytes)
    except ServingError as err:
        if name is None or err.code != Code.INVALID_ARGUMENT:
            raise
        raise invalid_argument(f"tensor parsing error: {name}: {err.message}") from None


def _to_ndarray(proto: tensor_pb2.TensorProto, max_bytes: int | None) -> np.ndarray:
    dtype = numpy_dtype(proto.dtype)
    if proto.tensor_shape.unknown_rank:
        raise invalid_argument("request tensors must have a known shape")
    shape = tuple(d.size for d in proto.tensor_shape.dim)
    size = validation.check_dims(shape, dtype.itemsize)
    needed = size * dtype.itemsize
    content = proto.tensor_content  # read once: each read copies the bytes
    if content:
        if proto.dtype == types_pb2.DT_STRING:
            raise invalid_argument("DT_STRING tensors cannot use tensor_content")
        if len(content) != needed:
            raise invalid_argument(
                f"tensor_content holds {len(content)} bytes but shape "
                f"{validation.format_shape(shape)} of {dtype_name(proto.dtype)} needs {needed}"
            )
        return np.frombuffer(content, dtype=dtype).reshape(shape)
    values = getattr(proto, _TYPES[proto.dtype][1])
    if len(values) > size:
        raise invalid_argument(
            f"tensor has {len(values)} values but shape {validation.format_shape(shape)}"
        )
    if max_bytes is not None and needed > max_bytes:
        # TF would expand the values to the shape and fail to allocate: a parsing error.
        raise invalid_argument(
            f"{len(values)} values of {dtype_name(proto.dtype)} do not fill shape "
            f"{validation.format_shape(shape)} ({needed} bytes); a request tensor is "
            f"limited to {max_bytes} bytes"
        )
    if proto.dtype == types_pb2.DT_STRING:
        flat = np.empty(len(values), dtype=object)
        flat[:] = list(values)
    elif proto.dtype == types_pb2.DT_HALF:
        flat = np.array(values, dtype=np.uint16).view(np.float16)
    elif dtype.kind in "iu":
        # int_val carries int8..uint16 as int32; wrap like TF's static_cast does.
        flat = np.array(values, dtype=np.int64 if dtype != np.uint64 else np.uint64).astype(dtype)
    else:
        flat = np.array(values, dtype=dtype)
    if 0 < len(flat) < size:
        flat = np.concatenate([flat, np.full(size - len(flat), flat[-1], dtype=flat.dtype)])
    elif len(flat) == 0 and size:
        flat = (
            np.zeros(size, dtype=dtype)
            if proto.dtype != types_pb2.DT_STRING
            else _empty_bytes(size)
        )
    return flat.reshape(shape)


def _empty_bytes(size: int) -> np.ndarray:
    flat = np.empty(size, dtype=object)
    flat[:] = [b""] * size
    return flat


def fill_tensor_proto(array: np.ndarray, proto: tensor_pb2.TensorProto) -> None:
    """Write a result into `proto` the way TF Serving does by default (typed value fields)."""
    if array.dtype != object and array.dtype not in _DT_OF:  # e.g. bfloat16, complex
        proto.CopyFrom(tf.make_tensor_proto(array))
        return
    dt = dtype_of(array)
    proto.dtype = dt
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    field = getattr(proto, _TYPES[dt][1])
    flat = array.ravel()
    if dt == types_pb2.DT_HALF:
        flat = flat.view(np.uint16)
    if dt == types_pb2.DT_STRING:
        field.extend(v if isinstance(v, bytes) else str(v).encode() for v in flat)
        return
    # In pieces: a large result as one Python list would cost ~32 bytes per value at once.
    for start in range(0, len(flat), _FILL_PIECE):
        field.extend(flat[start : start + _FILL_PIECE].tolist())


# --- REST: JSON <-> numpy ---------------------------------------------------------------


def from_json(value: Any, dt: int, deadline: float | None = None) -> np.ndarray:
    """A JSON value (scalar, nested lists, or a `NumericSpan` of the body) as an array of
    the signature's dtype; large numeric arrays go straight from text to numpy."""
    dtype = numpy_dtype(dt)
    if isinstance(value, NumericSpan):
        array = value.to_array(dtype, deadline) if dt != types_pb2.DT_STRING else None
        if array is not None:
            return array
        value = _materialized(value)
    elif isinstance(value, list) and value and isinstance(value[0], NumericSpan):
        stacked = _stack_spans(value, dtype, deadline) if dt != types_pb2.DT_STRING else None
        if stacked is not None:
            return stacked
    value = _materialized(value)
    if dt == types_pb2.DT_BOOL:
        fast = _bools_fast(value)
        if fast is not None:
            return fast
    shape = _dense_shape(value)
    validation.check_dims(shape)  # at most validation.MAX_RANK dimensions
    flat: list[Any] = []
    _fill(value, 0, shape, dt, flat)
    if dt == types_pb2.DT_STRING:
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
        return array.reshape(shape)
    return np.array(flat, dtype=dtype).reshape(shape)


# Spans the fast path refused are re-read as Python lists for TF Serving's exact error;
# above this size that would cost gigabytes, so the error is reported without the detail.
MAX_EXACT_SPAN_BYTES = 4 << 20


def _materialized(value: Any) -> Any:
    """`value` with every `NumericSpan` inside it read as Python lists (lists edited in place)."""
    if isinstance(value, NumericSpan):
        if len(value) > MAX_EXACT_SPAN_BYTES:
            raise invalid_argument(
                f"JSON Value: the array of {len(value)} bytes at offset {value.start} is not a "
                "rectangular array of numbers of the input's type (ragged, mistyped or out of "
                "range)"
            )
        return value.load()
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, (NumericSpan, list)):
                value[i] = _materialized(item)
    return value


def _stack_spans(spans: list[Any], dtype: np.dtype, deadline: float | None) -> np.ndarray | None:
    """Rows of the same numeric array (`instances` of named inputs), stacked; else None."""
    arrays = []
    for item in spans:
        array = item.to_array(dtype, deadline) if isinstance(item, NumericSpan) else None
        if array is None or (arrays and array.shape != arrays[0].shape):
            return None
        arrays.append(array)
    return np.stack(arrays)


def _bools_fast(value: Any) -> np.ndarray | None:
    """numpy's fast path for lists of JSON booleans only (anything else: the checked path)."""
    try:
        array = np.array(value)
    except (ValueError, TypeError, OverflowError):
        return None
    return array if array.dtype.kind == "b" else None


def _dense_shape(value: Any) -> list[int]:
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _fill(value: Any, level: int, shape: list[int], dt: int, out: list[Any]) -> None:
    if not isinstance(value, list):
        if level != len(shape):
            raise invalid_argument(
                f"JSON Value: {_short(value)} found at incorrect level: {level + 1} in the "
                f"JSON DOM. Expected at level: {len(shape)}"
            )
        out.append(_scalar(value, dt))
        return
    if level >= len(shape):
        raise invalid_argument(
            f"Encountered list at unexpected level: {level} expected < {len(shape)}"
        )
    if len(value) != shape[level]:
        raise invalid_argument(
            f"Encountered list at unexpected size: {len(value)} at level: {level} "
            f"expected size: {shape[level]}"
        )
    for item in value:
        _fill(item, level + 1, shape, dt, out)


def _scalar(value: Any, dt: int) -> Any:
    if dt == types_pb2.DT_STRING:
        if isinstance(value, str):
            return value.encode("utf-8", "surrogatepass")
        if isinstance(value, dict):
            return decode_b64(value)
        raise _type_error(value, dt)
    dtype = numpy_dtype(dt)
    if dtype.kind == "b":
        if isinstance(value, bool):
            return value
        raise _type_error(value, dt)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _type_error(value, dt)
    if dtype.kind == "f":
        return value
    if not isinstance(value, int):
        raise _type_error(value, dt)
    info = np.iinfo(dtype)
    if not info.min <= value <= info.max:
        raise invalid_argument(f"JSON Value: {value} is out of range for {dtype_name(dt)}")
    return value


def decode_b64(value: Any) -> bytes:
    """`{"b64": "..."}` -> bytes, the REST API's encoding of binary strings."""
    if not (isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)):
        raise invalid_argument(
            f"JSON Value: {_short(value)} not formatted correctly for base64 data"
        )
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise invalid_argument("Unable to base64 decode") from None


def is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _type_error(value: Any, dt: int) -> Exception:
    """TF Serving's wording: the JSON value, its JSON type (True, Number, ...), the dtype."""
    kinds = {int: "Number", float: "Number", str: "String", dict: "Object", list: "Array"}
    if isinstance(value, bool):
        name = "True" if value else "False"
    else:
        name = kinds.get(type(value), "Null" if value is None else type(value).__name__)
    return invalid_argument(
        f"JSON Value: {_short(value)} Type: {name} is not of expected type: "
        f"{dtype_name(dt)[3:].lower()}"
    )


def _short(value: Any, limit: int = 80) -> str:
    """A value as JSON text for an error message, cut to `limit` characters."""
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def to_json(array: np.ndarray, name: str) -> Any:
    """A result array as JSON-ready lists (floats shortest-printed, bytes as text or b64)."""
    if array.dtype == np.float32 or array.dtype == np.float16:
        # Print float32 the shortest way that round-trips (0.1, not 0.10000000149011612).
        return array.astype(str).astype(np.float64).tolist()
    if array.dtype == object or array.dtype.kind in "SU":
        as_b64 = name.endswith(BYTES_SUFFIX)
        convert = np.frompyfunc(lambda v: _bytes_to_json(v, as_b64), 1, 1)
        result = convert(array)
        return result.tolist() if isinstance(result, np.ndarray) else result
    return array.tolist()


def _bytes_to_json(value: Any, as_b64: bool) -> Any:
    if isinstance(value, str):
        value = value.encode()
    if as_b64:
        return {"b64": base64.b64encode(value).decode("ascii")}
    return value.decode("utf-8", "replace")


# Rows of a response are encoded this many values at a time, so a large result never
# exists as one big Python list (a few bytes of text per value instead of ~100 bytes).
_ENCODE_VALUES = 1 << 16


def to_json_text(array: np.ndarray, name: str, deadline: float | None = None) -> bytes:
    """`json.dumps(to_json(array, name))` as TF Serving writes it, built in row chunks."""
    return b"".join(to_json_parts(array, name, deadline))


def to_json_parts(array: np.ndarray, name: str, deadline: float | None = None) -> list[bytes]:
    """`to_json_text` as pieces to join once with what surrounds them (one copy, not two)."""
    if array.ndim == 0 or array.size <= _ENCODE_VALUES:
        return [dump_json(to_json(array, name))]
    step = max(1, _ENCODE_VALUES // max(1, array.size // array.shape[0]))
    parts = [b"["]
    for start in range(0, array.shape[0], step):
        check_deadline(deadline)
        parts += [dump_json(to_json(array[start : start + step], name))[1:-1], b","]
    parts[-1] = b"]"
    return parts


def rows_json_parts(columns: dict[str, np.ndarray], deadline: float | None = None) -> list[bytes]:
    """Row-format predictions of several outputs, `[{name: row value, ...}, ...]`, in chunks."""
    names = sorted(columns)
    rows = next(iter(columns.values())).shape[0] if columns else 0
    width = max(1, sum(v.size // max(1, v.shape[0]) for v in columns.values()))
    step = max(1, _ENCODE_VALUES // width)
    parts = [b"["]
    for start in range(0, rows, step):
        check_deadline(deadline)
        values = [to_json(columns[n][start : start + step], n) for n in names]
        chunk = [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]
        parts += [dump_json(chunk)[1:-1], b","]
    if len(parts) > 1:
        parts.pop()
    parts.append(b"]")
    return parts


def dump_json(payload: Any) -> bytes:
    """Compact JSON; NaN and (-)Infinity as bare tokens, as TF Serving writes (and reads) them."""
    return json.dumps(payload, allow_nan=True, separators=(",", ":")).encode()
