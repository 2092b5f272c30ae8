"""TFRecord files without TensorFlow: what is written reads back, and damage is an error,
never a crash or an allocation of what a corrupt length claims."""

from __future__ import annotations

import struct

import pytest

from fmnist.serving.wire.tfrecord import TFRecordError, masked_crc, read_records, write_records

RECORDS = [b"", b"a", b"\x00\xff" * 1000]


def test_records_read_back_in_order(tmp_path) -> None:
    path = tmp_path / "file.tfrecord"
    write_records(path, RECORDS)
    assert list(read_records(path)) == RECORDS


def test_masked_crc_is_tensorflows() -> None:
    # CRC-32C of b"123456789" is 0xE3069283 (the standard check value), masked as TF does.
    crc = 0xE3069283
    assert masked_crc(b"123456789") == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[:-1], "truncated record at 0"),  # data checksum cut short
        (lambda data: data[:5], "truncated record at 0"),
        (lambda data: data[:12] + bytes([data[12] ^ 1]) + data[13:], "corrupted record at 0"),
        (lambda data: bytes([data[0] ^ 1]) + data[1:], "corrupted record at 0"),
    ],
    ids=["cut-footer", "cut-header", "flipped-data", "flipped-length"],
)
def test_damaged_file_is_an_error(tmp_path, damage, message) -> None:
    path = tmp_path / "file.tfrecord"
    write_records(path, [b"abcdef"])
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(TFRecordError, match=message):
        list(read_records(path))


def test_huge_length_with_a_valid_checksum_is_refused_before_reading(tmp_path) -> None:
    length = struct.pack("<Q", 1 << 60)
    path = tmp_path / "file.tfrecord"
    path.write_bytes(length + struct.pack("<I", masked_crc(length)) + b"x" * 16)
    with pytest.raises(TFRecordError, match="truncated record at 0"):
        list(read_records(path))


def test_error_names_the_offset_of_the_bad_record(tmp_path) -> None:
    path = tmp_path / "file.tfrecord"
    write_records(path, [b"first", b"second"])
    data = bytearray(path.read_bytes())
    data[-6] ^= 1  # inside the second record's data
    path.write_bytes(bytes(data))
    with pytest.raises(TFRecordError, match="corrupted record at 21"):
        list(read_records(path))
