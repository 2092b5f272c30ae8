"""TensorFlow DataType enums, their numpy types and TensorProto value fields, and the shape
limits every decoded tensor is held to; shared by server and client, with no TensorFlow import.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from fmnist.serving.wire.status import invalid_argument

# tensorflow/core/framework/types.proto numbers (stable: they are on the wire).
DT_FLOAT, DT_DOUBLE, DT_INT32, DT_UINT8, DT_INT16, DT_INT8, DT_STRING = 1, 2, 3, 4, 5, 6, 7
DT_INT64, DT_BOOL, DT_UINT16, DT_HALF, DT_UINT32, DT_UINT64 = 9, 10, 17, 19, 22, 23
# Every DataType's name, by number (metadata prints them for any model; `protos` declares the
# DataType enum from it); the _REF types add 100.
TYPE_NAMES = (
    "INVALID",
    "FLOAT",
    "DOUBLE",
    "INT32",
    "UINT8",
    "INT16",
    "INT8",
    "STRING",
    "COMPLEX64",
    "INT64",
    "BOOL",
    "QINT8",
    "QUINT8",
    "QINT32",
    "BFLOAT16",
    "QINT16",
    "QUINT16",
    "UINT16",
    "COMPLEX128",
    "HALF",
    "RESOURCE",
    "VARIANT",
    "UINT32",
    "UINT64",
    "FLOAT8_E5M2",
    "FLOAT8_E4M3FN",
    "FLOAT8_E4M3FNUZ",
    "FLOAT8_E4M3B11FNUZ",
    "FLOAT8_E5M2FNUZ",
    "INT4",
    "UINT4",
    "INT2",
    "UINT2",
    "FLOAT4_E2M1FN",
)
_NAMES = {
    **{v: f"DT_{n}" for v, n in enumerate(TYPE_NAMES)},
    **{v + 100: f"DT_{n}_REF" for v, n in enumerate(TYPE_NAMES) if v},
}

# TF allows 254 dimensions, but its numpy bridge was built for numpy 1's 32: a DT_STRING
# tensor of rank 33 segfaults the process when fetched. Numeric ones are capped alike.
MAX_RANK = 32
MAX_BYTES = 2**63 - 1  # TF's element limit, applied to bytes: numpy cannot address more

# dtype enum -> (numpy dtype, typed TensorProto field) for the types TF Serving's APIs carry.
_TYPES: dict[int, tuple[np.dtype, str]] = {
    DT_FLOAT: (np.dtype(np.float32), "float_val"),
    DT_DOUBLE: (np.dtype(np.float64), "double_val"),
    DT_HALF: (np.dtype(np.float16), "half_val"),
    DT_INT8: (np.dtype(np.int8), "int_val"),
    DT_INT16: (np.dtype(np.int16), "int_val"),
    DT_INT32: (np.dtype(np.int32), "int_val"),
    DT_INT64: (np.dtype(np.int64), "int64_val"),
    DT_UINT8: (np.dtype(np.uint8), "int_val"),
    DT_UINT16: (np.dtype(np.uint16), "int_val"),
    DT_UINT32: (np.dtype(np.uint32), "uint32_val"),
    DT_UINT64: (np.dtype(np.uint64), "uint64_val"),
    DT_BOOL: (np.dtype(np.bool_), "bool_val"),
    DT_STRING: (np.dtype(object), "string_val"),
}
_DT_OF = {np_dtype: dt for dt, (np_dtype, _) in _TYPES.items() if dt != DT_STRING}
SUPPORTED_DTYPES = frozenset(_TYPES)  # the DataType enums requests and responses carry
VALUE_FIELD = {dt: field for dt, (_, field) in _TYPES.items()}  # TensorProto's typed fields


def dtype_name(dt: int) -> str:
    return _NAMES.get(dt, str(dt))


def numpy_dtype(dt: int) -> np.dtype:
    if dt not in _TYPES:
        raise invalid_argument(f"tensors of type {dtype_name(dt)} are not supported")
    return _TYPES[dt][0]


def supported_numpy(dtype: np.dtype) -> bool:
    """Whether arrays of `dtype` map onto one of the DataTypes above."""
    return dtype.kind == "O" or dtype in _DT_OF


def dtype_of(array: np.ndarray) -> int:
    """The DataType enum of a numpy array (object arrays hold DT_STRING bytes)."""
    if array.dtype == object or array.dtype.kind in "SU":
        return DT_STRING
    try:
        return _DT_OF[array.dtype]
    except KeyError:
        raise invalid_argument(f"numpy dtype {array.dtype} has no TensorFlow type") from None


def format_shape(shape: Sequence[int] | None) -> str:
    """A shape the way TF prints one: `[?,28,28]`, `<unknown>` for an unknown rank."""
    if shape is None:
        return "<unknown>"
    return "[" + ",".join("?" if d == -1 else str(d) for d in shape) + "]"


def check_dims(dims: Sequence[int], itemsize: int = 1) -> int:
    """A request tensor's declared dimensions are representable; returns its element count.

    Checked before any allocation: rank, negative sizes, and the byte count of the non-zero
    dimensions (numpy refuses `[0, 2**40, 2**40]` although it holds no elements)."""
    if len(dims) > MAX_RANK:
        raise invalid_argument(
            f"Shape has {len(dims)} dimensions which is over the limit of {MAX_RANK}"
        )
    if any(d < 0 for d in dims):
        raise invalid_argument(f"Shape {format_shape(dims)} has negative dimensions")
    addressed = math.prod(d for d in dims if d) * max(itemsize, 1)
    if addressed > MAX_BYTES:
        raise invalid_argument(
            f"Shape {format_shape(dims)} is too large (more than 2**63 - 1 bytes)"
        )
    return math.prod(dims)
