"""Checks every reader shares: labels against the class names, and classes.txt. TF-free."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fmnist.errors import DataError

CLASSES_FILE = "classes.txt"  # one class name per line, in label order


def read_class_names(path: Path) -> tuple[str, ...] | None:
    """The names in classes.txt (blank lines ignored), or None where there is no such file."""
    if not path.is_file():
        return None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: unreadable: {err}") from None
    names = tuple(line.strip() for line in lines if line.strip())
    if len(names) < 2:
        raise DataError(f"{path}: needs at least 2 class names, one per line; found {len(names)}")
    if len(set(names)) != len(names):
        raise DataError(f"{path}: class names repeat")
    return names


def check_labels(labels: np.ndarray, num_classes: int, where: str) -> np.ndarray:
    """`labels` as int64 [N], or a one-line DataError if any is not a class index."""
    if labels.dtype.kind not in "iu":
        raise DataError(f"{where}: labels must be integers, got {labels.dtype}")
    if labels.ndim == 2 and labels.shape[1] == 1:  # Keras' CIFAR layout: [N, 1]
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(f"{where}: labels must be a vector [N], got shape {list(labels.shape)}")
    labels = labels.astype(np.int64)
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{where}: {int(bad.sum())} labels out of range 0-{num_classes - 1} "
            f"(e.g. label {labels[first]} at index {first})"
        )
    return labels


def default_class_names(labels: list[np.ndarray], where: str) -> tuple[str, ...]:
    """Class names "0".."K-1" for the largest label K-1 seen (at least two classes)."""
    top = max((int(y.max()) for y in labels if y.size), default=0)
    if top < 1:
        raise DataError(f"{where}: all images have one label; a classifier needs 2 classes")
    return tuple(str(index) for index in range(top + 1))


def as_images(array: np.ndarray, where: str) -> np.ndarray:
    """uint8 [N, H, W] or [N, H, W, C] pixels as [N, H, W, C] with C 1 or 3."""
    if array.dtype != np.uint8:
        raise DataError(
            f"{where}: images must be uint8 pixels 0-255, got {array.dtype} "
            "(scale them to 0-255 and cast to uint8)"
        )
    if array.ndim == 3:
        array = array[..., np.newaxis]
    if array.ndim != 4 or array.shape[-1] not in (1, 3):
        raise DataError(
            f"{where}: images must be [N, H, W] or [N, H, W, C] with C 1 or 3, "
            f"got shape {list(array.shape)}"
        )
    return array
