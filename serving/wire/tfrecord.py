"""TFRecord files, the container of TF Serving's warm-up requests and request logs, without
TensorFlow.

Each record is: its length (uint64, little-endian), the masked CRC-32C of those 8 bytes
(uint32), the data, and the masked CRC-32C of the data. Reading checks both checksums and
trusts neither the length a record claims nor the size the file system reports (a log
still being written grows, a rotated one may shrink, a pipe has none): it reads the data
in pieces until it has the record or the file ends, so a damaged or lying file is an error,
never a crash or an allocation of what a corrupt length claims.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import google_crc32c

_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8
_PIECE = 1 << 20  # a record's data is read in pieces of this size: memory follows the file


class TFRecordError(Exception):
    """A record is truncated or fails its checksum (TensorFlow's DATA_LOSS); `offset` is
    where the bad record starts."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.offset = offset


class TruncatedRecord(TFRecordError):
    """The file ends inside a record: a writer still at work, or one that stopped."""


class CorruptRecord(TFRecordError):
    """A checksum fails (or a length is beyond the reader's limit): the bytes are damaged,
    and nothing after them can be trusted to start a record."""


def masked_crc(data: bytes) -> int:
    """TFRecord's checksum: CRC-32C, rotated right by 15 bits, plus a constant."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(data: bytes) -> bytes:
    """One record as it is stored: length, its checksum, the data, the data's checksum."""
    length = struct.pack("<Q", len(data))
    return (
        length + struct.pack("<I", masked_crc(length)) + data + struct.pack("<I", masked_crc(data))
    )


def read_records(
    path: str | os.PathLike, *, max_record_bytes: int | None = None
) -> Iterator[bytes]:
    """Every record's data, in order; TruncatedRecord or CorruptRecord at the first bad one.
    A record longer than `max_record_bytes` is refused as corrupt before it is read."""
    with Path(path).open("rb") as file:
        yield from iter_records(file, max_record_bytes=max_record_bytes)


def iter_records(file: BinaryIO, *, max_record_bytes: int | None = None) -> Iterator[bytes]:
    """The records of an open binary stream, from its current position to its end."""
    offset = 0
    while True:
        header = _read(file, _HEADER.size)
        if not header:
            return
        if len(header) < _HEADER.size:
            raise TruncatedRecord(f"truncated record at {offset}", offset)
        length, length_crc = _HEADER.unpack(header)
        if masked_crc(header[:8]) != length_crc:
            raise CorruptRecord(f"corrupted record at {offset}", offset)
        if max_record_bytes is not None and length > max_record_bytes:
            raise CorruptRecord(
                f"record at {offset} claims {length} bytes, over the limit of {max_record_bytes}",
                offset,
            )
        data = _read(file, length)
        footer = _read(file, _FOOTER.size) if len(data) == length else b""
        if len(footer) < _FOOTER.size:
            raise TruncatedRecord(f"truncated record at {offset}", offset)
        if masked_crc(data) != _FOOTER.unpack(footer)[0]:
            raise CorruptRecord(f"corrupted record at {offset}", offset)
        yield data
        offset += _HEADER.size + length + _FOOTER.size


def _read(file: BinaryIO, size: int) -> bytes:
    """Up to `size` bytes, fewer only at the end of the stream; read in pieces, so a length
    that lies costs no more memory than the stream really holds."""
    if size <= _PIECE:
        data = file.read(size)
        while data and len(data) < size:  # a pipe may return less than asked before its end
            more = file.read(size - len(data))
            if not more:
                break
            data += more
        return data
    pieces, left = [], size
    while left:
        piece = _read(file, min(left, _PIECE))
        if not piece:
            break
        pieces.append(piece)
        left -= len(piece)
    return b"".join(pieces)


def write_records(path: str | os.PathLike, records: Iterable[bytes]) -> None:
    """A TFRecord file (no compression) holding `records`."""
    with Path(path).open("wb") as file:
        for data in records:
            file.write(frame(data))
