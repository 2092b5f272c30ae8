"""JSON <-> numpy, by TF Serving's REST rules: `{"b64": ...}` for binary strings, NaN and
Infinity allowed, floats printed shortest. No TensorFlow import: the TFLite server and the
REST client use it as it is.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import numpy as np

from fmnist.serving.wire.dtypes import (
    DT_BOOL,
    DT_STRING,
    check_dims,
    dtype_name,
    numpy_dtype,
)
from fmnist.serving.wire.json_fast import NumericSpan, check_deadline
from fmnist.serving.wire.status import invalid_argument

BYTES_SUFFIX = "_bytes"  # DT_STRING outputs named like this are returned as {"b64": ...}


def from_json(value: Any, dt: int, deadline: float | None = None) -> np.ndarray:
    """A JSON value (scalar, nested lists, or a `NumericSpan` of the body) as an array of
    the signature's dtype; large numeric arrays go straight from text to numpy."""
    dtype = numpy_dtype(dt)
    if isinstance(value, NumericSpan):
        array = value.to_array(dtype, deadline) if dt != DT_STRING else None
        if array is not None:
            return array
        value = _materialized(value)
    elif isinstance(value, list) and value and isinstance(value[0], NumericSpan):
        stacked = _stack_spans(value, dtype, deadline) if dt != DT_STRING else None
        if stacked is not None:
            return stacked
    value = _materialized(value)
    if dt == DT_BOOL:
        fast = _bools_fast(value)
        if fast is not None:
            return fast
    shape = _dense_shape(value)
    check_dims(shape)  # at most MAX_RANK dimensions
    flat: list[Any] = []
    _fill(value, 0, shape, dt, flat)
    if dt == DT_STRING:
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
    if dt == DT_STRING:
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


# --- what a client sends and reads -----------------------------------------------------


def request_json(array: np.ndarray) -> Any:
    """A request tensor in TF Serving's JSON: nested lists; bytes always as {"b64": ...}."""
    if array.dtype.kind in "OS":
        encode = np.frompyfunc(lambda v: _bytes_to_json(v, as_b64=True), 1, 1)
        return encode(array).tolist()
    return array.tolist()


def response_array(value: Any) -> np.ndarray:
    """A response tensor's JSON (b64 objects decoded to bytes) as numpy; its dtype is what
    numpy infers, since REST answers carry no types."""

    def decode(item: Any) -> Any:
        if is_b64(item):
            return base64.b64decode(item["b64"])
        if isinstance(item, list):
            return [decode(x) for x in item]
        return item

    first = value
    while isinstance(first, list) and first:
        first = first[0]
    if isinstance(first, dict):
        return np.asarray(decode(value), dtype=object)
    return np.asarray(value)
