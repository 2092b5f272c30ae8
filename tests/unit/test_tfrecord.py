"""TFRecord files without TensorFlow: what is written reads back, and damage is an error,
never a crash or an allocation of what a corrupt length claims; the size the file system
reports is never trusted (a pipe has none, a log being written grows, a rotated one shrinks)."""

from __future__ import annotations

import os
import struct
import threading
import tracemalloc

import pytest

from fmnist.serving.wire.tfrecord import (
    CorruptRecord,
    TFRecordError,
    TruncatedRecord,
    frame,
    masked_crc,
    read_records,
    write_records,
)

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


def test_a_claimed_length_costs_only_the_bytes_the_file_holds(tmp_path) -> None:
    length = struct.pack("<Q", 1 << 40)  # a terabyte, with a valid checksum
    path = tmp_path / "file.tfrecord"
    path.write_bytes(length + struct.pack("<I", masked_crc(length)) + b"x" * 3_000_000)
    tracemalloc.start()
    try:
        with pytest.raises(TruncatedRecord):
            list(read_records(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8_000_000


def test_a_record_over_the_reader_limit_is_corrupt(tmp_path) -> None:
    path = tmp_path / "file.tfrecord"
    write_records(path, [b"small", b"x" * 1000])
    records = read_records(path, max_record_bytes=100)
    assert next(records) == b"small"
    with pytest.raises(CorruptRecord, match="record at 21 claims 1000 bytes, over the limit"):
        next(records)


def test_a_pipe_reports_no_size_and_its_records_are_read(tmp_path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    records = [b"a" * 70_000, b"b", b""]

    def feed() -> None:
        with fifo.open("wb") as pipe:
            for data in records:
                pipe.write(frame(data))
                pipe.flush()

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        assert list(read_records(fifo)) == records
    finally:
        writer.join(30)


def test_a_file_that_shrinks_while_read_is_truncated_not_a_crash(tmp_path) -> None:
    path = tmp_path / "file.tfrecord"
    write_records(path, [b"a" * 200_000, b"b" * 200_000, b"c" * 200_000])
    records = read_records(path)
    assert next(records) == b"a" * 200_000
    os.truncate(path, 300_000)  # a rotation cut the file inside the second record
    with pytest.raises(TruncatedRecord, match="truncated record at 200016"):
        next(records)


def test_records_appended_while_reading_are_read_too(tmp_path) -> None:
    path = tmp_path / "file.tfrecord"
    write_records(path, [b"first"])
    records = read_records(path)
    assert next(records) == b"first"
    with path.open("ab") as file:  # a writer still at work
        file.write(frame(b"second"))
    assert list(records) == [b"second"]


def test_errors_carry_the_offset_of_the_bad_record(tmp_path) -> None:
    path = tmp_path / "file.tfrecord"
    write_records(path, [b"first", b"second"])
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(TFRecordError) as raised:
        list(read_records(path))
    assert isinstance(raised.value, TruncatedRecord) and raised.value.offset == 21
