"""Pools of labelled images a Dataset draws its splits from: arrays in memory, or image files
decoded on demand (a folder dataset is never held in memory). TF-free."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fmnist.data import decode


class ArraySource:
    """Images already in memory (IDX, .npz): uint8 [N, H, W, C] and int64 labels [N]."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images = images
        self.labels = labels

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def read(self, indices: np.ndarray) -> np.ndarray:
        return self.images[indices]


class FileSource:
    """Image files decoded (and converted and resized) to one shape when read.

    One thread decodes a batch: Pillow's per-file work is mostly Python, so threads only
    contend for the GIL; tf.data runs several batches at once instead."""

    def __init__(
        self, root: Path, paths: np.ndarray, labels: np.ndarray, shape: tuple[int, int, int]
    ) -> None:
        self.root = root
        self.paths = paths  # relative to root, as bytes
        self.labels = labels
        self.shape = shape

    def path(self, index: int) -> str:
        return os.path.join(self.root, os.fsdecode(self.paths[index]))

    def read(self, indices: np.ndarray) -> np.ndarray:
        out = np.empty((len(indices), *self.shape), dtype=np.uint8)
        for row, index in enumerate(indices):
            out[row] = decode.decode(self.path(index), self.shape)
        return out
