"""Fashion-MNIST files on disk: where they are, whether they are the official ones, IDX
reading, and the seeded train/validation split every stage that needs the training images uses.

TF-free (numpy only), so the edge runner can read the test set on a Raspberry Pi; the split
imports scikit-learn when it runs.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmnist.contract import FASHION_MNIST_CLASSES
from fmnist.errors import DataError

DATA_DIR_ENV = "FMNIST_DATA_DIR"
KERAS_CACHE_DIR = Path("~/.keras/datasets/fashion-mnist")

CLASS_NAMES = FASHION_MNIST_CLASSES


@dataclass(frozen=True)
class OfficialFile:
    name: str
    sha256: str
    size: int


# SHA-256 and size of the official release (github.com/zalandoresearch/fashion-mnist).
TRAIN_IMAGES = OfficialFile(
    "train-images-idx3-ubyte.gz",
    "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    26421880,
)
TRAIN_LABELS = OfficialFile(
    "train-labels-idx1-ubyte.gz",
    "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    29515,
)
TEST_IMAGES = OfficialFile(
    "t10k-images-idx3-ubyte.gz",
    "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    4422102,
)
TEST_LABELS = OfficialFile(
    "t10k-labels-idx1-ubyte.gz",
    "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    5148,
)
OFFICIAL_FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

# IDX type codes (http://yann.lecun.com/exdb/mnist/) mapped to big-endian numpy dtypes.
_IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


@dataclass(frozen=True)
class Split:
    """Images as uint8 [N, 28, 28] and labels as uint8 [N]."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory: the argument, else $FMNIST_DATA_DIR, else Keras' cache folder."""
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    return KERAS_CACHE_DIR.expanduser()


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(data_dir: Path, official: OfficialFile) -> Path:
    """Return the file's path if it is byte-identical to the official one, else raise DataError."""
    path = data_dir / official.name
    if not data_dir.is_dir():
        raise DataError(
            f"data directory {data_dir} does not exist (pass --data-dir, set {DATA_DIR_ENV}, "
            "or download with --download)"
        )
    if not path.is_file():
        raise DataError(f"{path}: missing (expected the official Fashion-MNIST {official.name})")
    size = path.stat().st_size
    if size != official.size:
        state = "truncated" if size < official.size else "too large"
        raise DataError(f"{path}: {state}: {size} bytes, expected {official.size}")
    actual = sha256_file(path)
    if actual != official.sha256:
        raise DataError(
            f"{path}: altered: SHA-256 {actual[:16]}... does not match the official "
            f"{official.sha256[:16]}..."
        )
    return path


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzipped or raw) into a numpy array of its declared type and shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: cannot read IDX file: {err}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    header_end = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header_end + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise DataError(f"{path}: IDX payload is {len(data)} bytes, header promises {expected}")
    return (
        np.frombuffer(data, dtype=dtype, offset=header_end)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def _load_split(data_dir: Path, images: OfficialFile, labels: OfficialFile) -> Split:
    x = read_idx(verify_file(data_dir, images))
    y = read_idx(verify_file(data_dir, labels))
    return Split(images=x, labels=y)


def load_test(data_dir: str | os.PathLike | None = None) -> Split:
    """The 10,000 official test images, verified; for final evaluation and parity checks only."""
    return _load_split(resolve_data_dir(data_dir), TEST_IMAGES, TEST_LABELS)


def load_train(data_dir: str | os.PathLike | None = None) -> Split:
    """The 60,000 official training images, verified."""
    return _load_split(resolve_data_dir(data_dir), TRAIN_IMAGES, TRAIN_LABELS)


def labels_sha256(labels: np.ndarray) -> str:
    """Fingerprint of a label vector, so a parity check can prove it used the same test set."""
    return hashlib.sha256(np.ascontiguousarray(labels, dtype=np.uint8).tobytes()).hexdigest()


@dataclass(frozen=True)
class FashionMNIST:
    """The verified train/validation split and the test set, as uint8 arrays."""

    train: Split
    validation: Split
    test: Split
    class_names: tuple[str, ...] = CLASS_NAMES
    data_dir: Path | None = None


def load_splits(
    data_dir: str | os.PathLike | None, *, val_fraction: float, seed: int
) -> FashionMNIST:
    """Verified train/validation/test splits; `val_fraction` and `seed` are the run's own
    (a training config's, or a run directory's: fmnist.run_dir)."""
    directory = resolve_data_dir(data_dir)
    train, validation = split_train_validation(load_train(directory), val_fraction, seed)
    return FashionMNIST(train, validation, load_test(directory), data_dir=directory)


def split_indices(
    labels: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and validation indices: stratified by class, seeded, disjoint."""
    from sklearn.model_selection import train_test_split

    train_idx, val_idx = train_test_split(
        np.arange(len(labels)), test_size=val_fraction, stratify=labels, random_state=seed
    )
    return np.sort(train_idx), np.sort(val_idx)


def split_train_validation(split: Split, val_fraction: float, seed: int) -> tuple[Split, Split]:
    """Stratified, seeded split: every class keeps its share in both parts."""
    train_idx, val_idx = split_indices(split.labels, val_fraction, seed)
    return (
        Split(split.images[train_idx], split.labels[train_idx]),
        Split(split.images[val_idx], split.labels[val_idx]),
    )


def subset(split: Split, size: int, seed: int) -> Split:
    """A stratified subset of `size` images (quick runs, tuning trials, int8 calibration)."""
    if size >= len(split):
        return split
    from sklearn.model_selection import train_test_split

    keep, _ = train_test_split(
        np.arange(len(split)), train_size=size, stratify=split.labels, random_state=seed
    )
    keep.sort()
    return Split(split.images[keep], split.labels[keep])
