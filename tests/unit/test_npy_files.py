"""Arrays from untrusted files (reference outputs, .npy images): the header is checked
against what the caller expects before anything its size is allocated."""

from __future__ import annotations

import io
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fmnist.contract import FASHION_MNIST
from fmnist.errors import EXIT_USAGE, ManifestError
from fmnist.images import ImageError, load_inputs
from fmnist.manifest import load_manifest

Writer = Callable[[Path, np.ndarray], None]


def _header(shape: tuple[int, ...], descr: str) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        out, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return out.getvalue()


def _npz_member(payload: bytes, member: str = "probabilities.npy") -> Writer:
    def write(path: Path, _: np.ndarray) -> None:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as npz:
            npz.writestr(member, payload)

    return write


def _values(change: Callable[[np.ndarray], np.ndarray]) -> Writer:
    def write(path: Path, probs: np.ndarray) -> None:
        np.savez_compressed(path, probabilities=change(probs.copy()))

    return write


def _one(value: float) -> Writer:
    def change(probs: np.ndarray) -> np.ndarray:
        probs[3, 4] = value
        return probs

    return _values(change)


def _truncated(path: Path, probs: np.ndarray) -> None:
    np.savez_compressed(path, probabilities=probs)
    path.write_bytes(path.read_bytes()[:300])


def _corrupt(path: Path, probs: np.ndarray) -> None:
    np.savez_compressed(path, probabilities=probs)
    content = bytearray(path.read_bytes())
    for i in range(120, 220):  # inside the compressed member
        content[i] ^= 0xFF
    path.write_bytes(bytes(content))


def _npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


BAD_REFERENCES = [
    ("truncated", _truncated, "unreadable reference outputs (BadZipFile"),
    ("corrupt", _corrupt, "reference outputs"),
    ("nan", _one(float("nan")), "NaN or infinite values; parity cannot be checked"),
    ("infinity", _one(float("inf")), "NaN or infinite values"),
    ("negative", _one(-0.5), "not probabilities"),
    ("above one", _one(3.0), "not probabilities"),
    (
        "header claims 1e8 rows",
        _npz_member(_header((100_000_000, 10), "<f8") + b"\0" * 4_000_000),
        "shape [100000000, 10], expected [50, 10]",
    ),
    (
        "too few rows",
        _values(lambda probs: probs[:10]),
        "shape [10, 10], expected [50, 10]",
    ),
    (
        "integers",
        _values(lambda probs: (probs > 0.5).astype(np.int64)),
        "dtype int64, expected floating point",
    ),
    (
        "header promises more data than there is",
        _npz_member(_header((50, 10), "<f4") + b"\0" * 100),
        "the file holds 100 bytes of data",
    ),
    (
        "objects",
        _npz_member(_npy(np.array([None] * 500, dtype=object).reshape(50, 10))),
        "holds Python objects",
    ),
    (
        "another array name",
        _npz_member(_npy(np.zeros((50, 10))), "probs.npy"),
        "no 'probabilities'",
    ),
    ("not a .npy member", _npz_member(b"hello world" * 10), "not a valid .npy header"),
]


@pytest.mark.parametrize(
    ("write", "message"), [pytest.param(w, m, id=name) for name, w, m in BAD_REFERENCES]
)
def test_bad_reference_outputs_are_manifest_errors(
    make_bundle: Callable[..., Path], write: Writer, message: str
) -> None:
    manifest = load_manifest(make_bundle(write))  # checksums match: only the content is bad
    with pytest.raises(ManifestError) as raised:
        manifest.load_reference()
    assert message in str(raised.value) and "reference_outputs.npz" in str(raised.value)
    assert raised.value.exit_code == EXIT_USAGE
    assert "\n" not in str(raised.value)


def test_a_huge_header_allocates_nothing_its_size(make_bundle: Callable[..., Path]) -> None:
    """The 1e8-row claim (8 GB as float64) is refused before the data is read."""
    bundle = make_bundle(_npz_member(_header((100_000_000, 10), "<f8") + b"\0" * 4_000_000))
    manifest = load_manifest(bundle)
    tracemalloc.start()
    try:
        with pytest.raises(ManifestError):
            manifest.load_reference()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10_000_000


def test_valid_reference_outputs_load(
    make_bundle: Callable[..., Path], reference: np.ndarray
) -> None:
    probs = load_manifest(make_bundle()).load_reference()
    assert probs.dtype == np.float32 and np.array_equal(probs, reference)


def _file(content: bytes) -> Callable[[Path], Path]:
    def write(path: Path) -> Path:
        path.write_bytes(content)
        return path

    return write


BAD_IMAGE_ARRAYS = [
    ("empty", b"", "empty file"),
    ("strings", _npy(np.full((2, 28, 28), "ab")), "holds <U2 values"),
    ("bytes", _npy(np.full((2, 28, 28), b"ab")), "holds |S2 values"),
    ("booleans", _npy(np.zeros((28, 28), bool)), "holds bool values"),
    ("complex", _npy(np.zeros((28, 28), complex)), "holds complex128 values"),
    ("objects", _npy(np.array([None] * 784, dtype=object).reshape(28, 28)), "Python objects"),
    (
        "header claims 1e8 images",
        _header((100_000_000, 28, 28), "|u1") + b"\0" * 7840,
        "header promises shape [100000000, 28, 28] of uint8 (78.4 GB)",
    ),
    ("truncated data", _npy(np.zeros((4, 28, 28), np.uint8))[:-100], "the file holds"),
    ("bad magic", b"PK\x03\x04 a zip, say", "not a valid .npy header"),
    ("negative dimension", _header((-1, 28, 28), "|u1") + b"\0" * 784, "negative dimension"),
    ("header only", _header((1, 28, 28), "|u1"), "the file holds 0 bytes of data"),
    (
        "wrong image size",
        _npy(np.zeros((5, 10), np.uint8)),
        "expected images of shape [N, 28, 28, 1] or [N, 28, 28]",
    ),
    ("fractions", _npy(np.full((28, 28), 0.5)), "expected pixel values 0-255"),
    ("no images", _npy(np.zeros((0, 28, 28), np.uint8)), "holds no images"),
]


@pytest.mark.parametrize(
    ("content", "message"), [pytest.param(c, m, id=name) for name, c, m in BAD_IMAGE_ARRAYS]
)
def test_bad_npy_images_are_image_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "images.npy"
    path.write_bytes(content)
    with pytest.raises(ImageError) as raised:
        load_inputs([path], FASHION_MNIST)
    assert message in str(raised.value) and str(path) in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    "array",
    [
        pytest.param(np.arange(2 * 784).reshape(2, 28, 28) % 256, id="int64"),
        pytest.param(np.asfortranarray(np.arange(784).reshape(28, 28) % 256), id="fortran"),
        pytest.param((np.arange(784).reshape(1, 28, 28, 1) % 256).astype(">u2"), id="big-endian"),
        pytest.param((np.arange(784).reshape(1, 28, 28) % 256).astype(np.float32), id="float"),
    ],
)
def test_valid_npy_images_load_as_numpy_saved_them(tmp_path: Path, array: np.ndarray) -> None:
    path = tmp_path / "images.npy"
    np.save(path, array)
    _, images = load_inputs([path], FASHION_MNIST)
    expected = array.reshape(-1, 28, 28, 1).astype(np.uint8)
    assert images.dtype == np.uint8 and np.array_equal(images, expected)
