"""Real test images for `fmnist-edge classify` on an emulated Pi, with the standard library only.

The host running the check needs no numpy: IDX files, the bundle's `.npz` reference outputs,
PNG and `.npy` files are small, simple formats read and written here directly.
"""

from __future__ import annotations

import ast
import gzip
import io
import struct
import zipfile
import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path

SIZE = 28  # Fashion-MNIST images are 28x28 grayscale


@dataclass(frozen=True)
class Sample:
    index: int  # position in the test set
    label: int  # the true class, which the float reference also picks with a wide margin
    pixels: bytes  # 28*28 uint8, row-major


def read_idx(path: Path) -> tuple[tuple[int, ...], bytes]:
    """An unsigned-byte IDX file (gzipped or raw): (shape, raw data)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = data[4 + 4 * ndim :]
    expected = 1
    for n in shape:
        expected *= n
    if len(body) != expected:
        raise ValueError(f"{path}: {len(body)} data bytes, shape {shape} needs {expected}")
    return shape, body


def parse_npy(raw: bytes) -> tuple[tuple[int, ...], list[float]]:
    """A little-endian float32/float64 C-order `.npy` array: (shape, flat values)."""
    if raw[:6] != b"\x93NUMPY":
        raise ValueError("not a .npy array")
    major = raw[6]
    if major == 1:
        (header_len,) = struct.unpack("<H", raw[8:10])
        start = 10
    else:
        (header_len,) = struct.unpack("<I", raw[8:12])
        start = 12
    header = ast.literal_eval(raw[start : start + header_len].decode("latin1"))
    if header["fortran_order"] or header["descr"] not in ("<f4", "<f8"):
        raise ValueError(f"unsupported .npy layout {header}")
    values = array("f" if header["descr"] == "<f4" else "d")
    values.frombytes(raw[start + header_len :])
    return tuple(header["shape"]), values.tolist()


def read_reference(npz_path: Path) -> list[list[float]]:
    """The float model's test-set probabilities from a bundle's reference outputs, [N][classes]."""
    with zipfile.ZipFile(npz_path) as npz:
        shape, flat = parse_npy(npz.read("probabilities.npy"))
    rows, cols = shape
    return [flat[i * cols : (i + 1) * cols] for i in range(rows)]


def pick_samples(
    labels: bytes, images: bytes, reference: list[list[float]], margin: float = 0.5
) -> list[Sample]:
    """The first test image of each class that the float model gets right by `margin`.

    A wide margin between the float model's top two probabilities means the int8 model
    must pick the same class: a different answer is drift, not a borderline case.
    """
    num_classes = len(reference[0])
    picked: dict[int, Sample] = {}
    for i, label in enumerate(labels):
        if label in picked:
            continue
        probs = reference[i]
        top, second = sorted(probs, reverse=True)[:2]
        if probs.index(top) == label and top - second >= margin:
            pixels = images[i * SIZE * SIZE : (i + 1) * SIZE * SIZE]
            picked[label] = Sample(index=i, label=label, pixels=pixels)
        if len(picked) == num_classes:
            break
    return [picked[c] for c in sorted(picked)]


def png_bytes(pixels: bytes, width: int = SIZE, height: int = SIZE) -> bytes:
    """An 8-bit grayscale PNG of `pixels` (row-major)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    rows = b"".join(b"\0" + pixels[y * width : (y + 1) * width] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def npy_bytes(images: list[bytes], size: int = SIZE) -> bytes:
    """A uint8 [N, size, size] `.npy` array (format 1.0) of the given images."""
    shape = f"({len(images)}, {size}, {size})"
    header = f"{{'descr': '|u1', 'fortran_order': False, 'shape': {shape}, }}"
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + " " * (pad % 64) + "\n"
    out = io.BytesIO()
    out.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1"))
    for image in images:
        out.write(image)
    return out.getvalue()


def write_samples(data_dir: Path, reference_npz: Path, out: Path) -> list[Sample]:
    """Write one PNG per class and all of them as one `.npy` into `out`; return the samples."""
    _, labels = read_idx(data_dir / "t10k-labels-idx1-ubyte.gz")
    _, images = read_idx(data_dir / "t10k-images-idx3-ubyte.gz")
    samples = pick_samples(labels, images, read_reference(reference_npz))
    out.mkdir(parents=True, exist_ok=True)
    for sample in samples:
        (out / f"test{sample.index:05d}.png").write_bytes(png_bytes(sample.pixels))
    (out / "samples.npy").write_bytes(npy_bytes([s.pixels for s in samples]))
    return samples
