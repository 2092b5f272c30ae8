"""Real test images for `fmnist-edge classify` on an emulated Pi, with the standard library only.

The host running the check needs no numpy: IDX files, `.npz` datasets and the bundle's
reference outputs, PNG and `.npy` files are small, simple formats read and written here
directly. Images are uint8 H x W x C (C 1 or 3), whatever the bundle's input contract says.
"""

from __future__ import annotations

import ast
import gzip
import io
import json
import re
import struct
import zipfile
import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path

Shape = tuple[int, int, int]  # (height, width, channels) of one image
# Bundles from before the input contract hold a 28x28 grayscale model.
LEGACY_SHAPE = (28, 28, 1)
TEST_IDX = re.compile(r"^t10k-(images|labels)[.-]idx[13]-ubyte(\.gz)?$")
# numpy type strings of the arrays read here -> the `array` module's type codes
NPY_TYPES = {"<f4": "f", "<f8": "d", "|u1": "B", "|i1": "b", "<i2": "h", "<u2": "H"}
NPY_TYPES.update({"<i4": "i", "<u4": "I", "<i8": "q", "<u8": "Q"})


@dataclass(frozen=True)
class Sample:
    index: int  # position in the test set
    label: int  # the true class, which the float reference also picks with a wide margin
    pixels: bytes  # H*W*C uint8, row-major


def bundle_shape(bundle: Path) -> Shape:
    """(H, W, C) of the bundle's input contract (the manifest's `input`)."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    contract = manifest.get("input")
    if contract is None:
        return LEGACY_SHAPE
    return (int(contract["height"]), int(contract["width"]), int(contract["channels"]))


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


def npy_parts(raw: bytes) -> tuple[tuple[int, ...], str, bytes]:
    """A C-order `.npy` array: (shape, numpy type string, raw data)."""
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
    if header["fortran_order"] or header["descr"] not in NPY_TYPES:
        raise ValueError(f"unsupported .npy layout {header}")
    return tuple(header["shape"]), header["descr"], raw[start + header_len :]


def parse_npy(raw: bytes) -> tuple[tuple[int, ...], list]:
    """A little-endian C-order `.npy` array of numbers: (shape, flat values)."""
    shape, descr, data = npy_parts(raw)
    values = array(NPY_TYPES[descr])
    values.frombytes(data)
    return shape, values.tolist()


def read_reference(npz_path: Path) -> list[list[float]]:
    """The float model's test-set probabilities from a bundle's reference outputs, [N][classes]."""
    with zipfile.ZipFile(npz_path) as npz:
        shape, flat = parse_npy(npz.read("probabilities.npy"))
    rows, cols = shape
    return [flat[i * cols : (i + 1) * cols] for i in range(rows)]


def pick_samples(
    labels: bytes | list[int],
    images: bytes,
    reference: list[list[float]],
    margin: float = 0.5,
) -> list[Sample]:
    """The first test image of each class that the float model gets right by `margin`.

    A wide margin between the float model's top two probabilities means the int8 model
    must pick the same class: a different answer is drift, not a borderline case.
    """
    num_classes = len(reference[0])
    size = len(images) // max(len(labels), 1)  # bytes per image
    picked: dict[int, Sample] = {}
    for i, label in enumerate(labels):
        if label in picked:
            continue
        probs = reference[i]
        top, second = sorted(probs, reverse=True)[:2]
        if probs.index(top) == label and top - second >= margin:
            pixels = images[i * size : (i + 1) * size]
            picked[label] = Sample(index=i, label=label, pixels=pixels)
        if len(picked) == num_classes:
            break
    return [picked[c] for c in sorted(picked)]


def png_bytes(pixels: bytes, shape: Shape) -> bytes:
    """An 8-bit grayscale (C = 1) or RGB (C = 3) PNG of `pixels` (row-major H x W x C)."""
    height, width, channels = shape

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    row = width * channels
    rows = b"".join(b"\0" + pixels[y * row : (y + 1) * row] for y in range(height))
    colour_type = 0 if channels == 1 else 2
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def npy_bytes(images: list[bytes], shape: Shape) -> bytes:
    """A uint8 [N, H, W, C] `.npy` array (format 1.0) of the given images."""
    dims = f"({len(images)}, {', '.join(map(str, shape))})"
    header = f"{{'descr': '|u1', 'fortran_order': False, 'shape': {dims}, }}"
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + " " * (pad % 64) + "\n"
    out = io.BytesIO()
    out.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1"))
    for image in images:
        out.write(image)
    return out.getvalue()


def data_files(data: Path) -> list[Path]:
    """What a device needs of a dataset for parity: an `.npz`, or the two IDX test files."""
    if data.is_file() and data.suffix == ".npz":
        return [data]
    found = sorted(p for p in data.iterdir() if TEST_IDX.match(p.name)) if data.is_dir() else []
    if {TEST_IDX.match(p.name)[1] for p in found} != {"images", "labels"}:
        raise ValueError(
            f"{data}: expected an .npz dataset or the t10k-images and t10k-labels IDX files "
            "(folder datasets: the check picks its sample images from those two forms)"
        )
    return found


def read_test_set(data: Path) -> tuple[list[int], bytes, Shape]:
    """(labels, images row-major, (H, W, C)) of a dataset's test split."""
    if data.suffix == ".npz":
        with zipfile.ZipFile(data) as npz:
            shape, descr, images = npy_parts(npz.read("x_test.npy"))
            _, labels = parse_npy(npz.read("y_test.npy"))
        if descr != "|u1":
            raise ValueError(f"{data}: x_test holds {descr}, not uint8 pixels")
    else:
        files = {TEST_IDX.match(p.name)[1]: p for p in data_files(data)}
        shape, images = read_idx(files["images"])
        labels = list(read_idx(files["labels"])[1])
    image = tuple(shape[1:]) if len(shape) == 4 else (*shape[1:], 1)
    return [int(v) for v in labels], images, image


def write_samples(data: Path, bundle: Path, reference_npz: Path, out: Path) -> list[Sample]:
    """Write one PNG per class and all of them as one `.npy` into `out`; return the samples."""
    labels, images, shape = read_test_set(data)
    wanted = bundle_shape(bundle)
    if shape != wanted:
        raise ValueError(f"{data}: test images are {shape}, the bundle's model takes {wanted}")
    samples = pick_samples(labels, images, read_reference(reference_npz))
    out.mkdir(parents=True, exist_ok=True)
    for sample in samples:
        (out / f"test{sample.index:05d}.png").write_bytes(png_bytes(sample.pixels, shape))
    (out / "samples.npy").write_bytes(npy_bytes([s.pixels for s in samples], shape))
    return samples
