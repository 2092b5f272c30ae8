"""TFRecord files, the container of TF Serving's warm-up requests, without TensorFlow.

Each record is: its length (uint64, little-endian), the masked CRC-32C of those 8 bytes
(uint32), the data, and the masked CRC-32C of the data. Reading checks both checksums
and never allocates more than the file holds, so a damaged file is an error, not a
crash or a huge allocation.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

import google_crc32c

_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8


class TFRecordError(Exception):
    """A record is truncated or fails its checksum (TensorFlow's DATA_LOSS)."""


def masked_crc(data: bytes) -> int:
    """TFRecord's checksum: CRC-32C, rotated right by 15 bits, plus a constant."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def read_records(path: str | os.PathLike) -> Iterator[bytes]:
    """Every record's data, in order; TFRecordError at the first bad one."""
    with Path(path).open("rb") as file:
        size = os.fstat(file.fileno()).st_size
        offset = 0
        while offset < size:
            header = file.read(_HEADER.size)
            if len(header) < _HEADER.size:
                raise TFRecordError(f"truncated record at {offset}")
            length, length_crc = _HEADER.unpack(header)
            if masked_crc(header[:8]) != length_crc:
                raise TFRecordError(f"corrupted record at {offset}")
            if length > size - offset - _HEADER.size - _FOOTER.size:
                raise TFRecordError(f"truncated record at {offset}")
            data = file.read(length)
            (data_crc,) = _FOOTER.unpack(file.read(_FOOTER.size))
            if masked_crc(data) != data_crc:
                raise TFRecordError(f"corrupted record at {offset}")
            yield data
            offset += _HEADER.size + length + _FOOTER.size


def write_records(path: str | os.PathLike, records: Iterable[bytes]) -> None:
    """A TFRecord file (no compression) holding `records`."""
    with Path(path).open("wb") as file:
        for data in records:
            length = struct.pack("<Q", len(data))
            file.write(length + struct.pack("<I", masked_crc(length)))
            file.write(data + struct.pack("<I", masked_crc(data)))
