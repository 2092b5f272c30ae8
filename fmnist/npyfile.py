"""Reading untrusted `.npy` arrays (alone or inside an `.npz`) with the header checked first.

`np.load` allocates whatever the header claims before it reads a byte of data, so a 4 MB
file claiming shape (1e8, 10) asks for 8 GB (a Raspberry Pi has 1-8). Here the header is
parsed on its own, the caller checks shape and dtype against what it expects, and the data
size must match the header before anything the size of the array is allocated. TF-free.
"""

from __future__ import annotations

import math
import tokenize
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npy_format

# What numpy's header parser and zipfile raise on damaged input (the header is a Python
# literal parsed by numpy; a corrupt one can fail in the tokenizer).
READ_ERRORS = (
    ValueError,
    SyntaxError,
    TypeError,
    KeyError,
    EOFError,
    OSError,
    OverflowError,
    NotImplementedError,
    tokenize.TokenError,
    zipfile.BadZipFile,
    zlib.error,
)


class NpyFormatError(ValueError):
    """A `.npy` payload that is damaged, or does not hold what its header or the caller says."""


@dataclass(frozen=True)
class NpyHeader:
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    data_offset: int

    @property
    def nbytes(self) -> int:
        """Bytes of data the header promises (Python ints: no overflow for absurd shapes)."""
        return math.prod(self.shape) * self.dtype.itemsize


def describe_error(err: BaseException) -> str:
    """An exception as one short line (numpy and zipfile messages can span lines)."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def read_header(stream: BinaryIO) -> NpyHeader:
    """Parse the magic string and header of a `.npy` stream, leaving it at the data."""
    try:
        version = npy_format.read_magic(stream)
        if version == (1, 0):
            shape, fortran_order, dtype = npy_format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran_order, dtype = npy_format.read_array_header_2_0(stream)
        else:
            raise NpyFormatError(f"unsupported .npy format version {version[0]}.{version[1]}")
        if any(int(d) < 0 for d in shape):
            raise NpyFormatError(f"negative dimension in shape {list(shape)}")
        return NpyHeader(
            tuple(int(d) for d in shape), np.dtype(dtype), bool(fortran_order), stream.tell()
        )
    except NpyFormatError:
        raise
    except READ_ERRORS as err:
        raise NpyFormatError(f"not a valid .npy header ({describe_error(err)})") from None


def read_checked(
    stream: BinaryIO, total_bytes: int, check: Callable[[NpyHeader], None]
) -> np.ndarray:
    """Read one `.npy` array of `total_bytes` (file or zip member size).

    `check(header)` raises for a shape or dtype the caller cannot use; it runs before
    the data is read, and the data must then be exactly the size the header promises.
    """
    header = read_header(stream)
    if header.dtype.hasobject:
        raise NpyFormatError("holds Python objects (pickles are never loaded)")
    check(header)
    available = total_bytes - header.data_offset
    if available != header.nbytes:
        raise NpyFormatError(
            f"header promises shape {list(header.shape)} of {header.dtype} "
            f"({_size(header.nbytes)}), but the file holds {_size(max(available, 0))} of data"
        )
    raw = np.empty(header.nbytes, dtype=np.uint8)  # bounded: the size matched the file's
    view, got = memoryview(raw), 0
    try:
        while got < header.nbytes:
            count = stream.readinto(view[got:])
            if not count:
                raise NpyFormatError(f"truncated: {got} of {header.nbytes} data bytes")
            got += count
    except NpyFormatError:
        raise
    except READ_ERRORS as err:
        raise NpyFormatError(f"unreadable array data ({describe_error(err)})") from None
    flat = raw.view(header.dtype)
    if header.fortran_order:
        return flat.reshape(header.shape[::-1]).transpose()
    return flat.reshape(header.shape)


def _size(nbytes: int) -> str:
    if nbytes < 1000:
        return f"{nbytes} bytes"
    value = float(nbytes)
    for unit in ("KB", "MB", "GB"):
        value /= 1000
        if value < 1000:
            return f"{value:.1f} {unit}"
    return f"{value / 1000:.1f} TB"
