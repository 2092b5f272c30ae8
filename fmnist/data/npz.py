"""The .npz reader: x_train, y_train, x_test, y_test as the Keras datasets have them
(x uint8 [N, H, W] or [N, H, W, C], y integers [N] or [N, 1]), and an optional class_names
array of strings. Each array's header is checked before its data is read
(fmnist.npyfile), so a hostile file cannot make us allocate what it claims. TF-free.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from fmnist.contract import InputContract
from fmnist.data.labels import as_images, check_labels, default_class_names
from fmnist.data.source import ArraySource
from fmnist.errors import DataError
from fmnist.npyfile import READ_ERRORS, NpyFormatError, NpyHeader, describe_error, read_checked

ARRAYS = ("x_train", "y_train", "x_test", "y_test")
CLASS_NAMES = "class_names"
# Deflate expands at most ~1032:1; a member claiming more is lying about its size.
_MAX_DEFLATE_RATIO = 1100


def is_npz(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".npz"


def _check(name: str, header: NpyHeader) -> None:
    kind = header.dtype.kind
    if name.startswith("x_") and (kind != "u" or header.dtype.itemsize != 1):
        raise NpyFormatError(
            f"images must be uint8 pixels 0-255, got {header.dtype} "
            "(scale them to 0-255 and cast to uint8)"
        )
    if name.startswith("y_") and kind not in "iu":
        raise NpyFormatError(f"labels must be integers, got {header.dtype}")
    if name == CLASS_NAMES and (kind != "U" or len(header.shape) != 1):
        raise NpyFormatError(f"must be a vector of strings, got {header.dtype} {header.shape}")


def _read_member(archive: zipfile.ZipFile, name: str, where: str) -> np.ndarray:
    try:
        member = archive.getinfo(name + ".npy")
        if member.compress_size * _MAX_DEFLATE_RATIO < member.file_size:
            raise NpyFormatError(f"claims {member.file_size} bytes from {member.compress_size}")
        with archive.open(member) as stream:
            return read_checked(stream, member.file_size, lambda h: _check(name, h))
    except NpyFormatError as err:
        raise DataError(f"{where}: {name}: {err}") from None
    except READ_ERRORS as err:
        raise DataError(f"{where}: {name}: unreadable ({describe_error(err)})") from None


def read(path: Path) -> tuple[InputContract, ArraySource, ArraySource]:
    """The contract and the train and test pools of an .npz file."""
    where = str(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = {n.removesuffix(".npy") for n in archive.namelist()}
            missing = [name for name in ARRAYS if name not in members]
            if missing:
                raise DataError(
                    f"{where}: no {', '.join(missing)} (expected x_train, y_train, x_test, "
                    "y_test as in keras.datasets)"
                )
            arrays = {name: _read_member(archive, name, where) for name in ARRAYS}
            names = None
            if CLASS_NAMES in members:
                names = tuple(str(n) for n in _read_member(archive, CLASS_NAMES, where))
    except (zipfile.BadZipFile, OSError) as err:
        raise DataError(f"{where}: not a readable .npz archive ({describe_error(err)})") from None
    if names is None:
        names = default_class_names([arrays["y_train"], arrays["y_test"]], where)
    pools = []
    for part in ("train", "test"):
        images = as_images(arrays[f"x_{part}"], f"{where}: x_{part}")
        labels = check_labels(arrays[f"y_{part}"], len(names), f"{where}: y_{part}")
        if len(labels) != len(images):
            raise DataError(f"{where}: x_{part} has {len(images)} images, y_{part} {len(labels)}")
        pools.append(ArraySource(images, labels))
    height, width, channels = pools[0].shape
    return InputContract(height, width, channels, names), pools[0], pools[1]
