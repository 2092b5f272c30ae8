"""Pools of labelled images a Dataset draws its splits from: arrays in memory, or image files
decoded on demand (a folder dataset is never held in memory). TF-free."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

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
    """Image files decoded (and converted and resized) to one shape when read."""

    # Pillow releases the GIL while it decodes, so a few threads decode a batch faster.
    THREADS = 4

    def __init__(self, paths: np.ndarray, labels: np.ndarray, shape: tuple[int, int, int]):
        self.paths = paths
        self.labels = labels
        self.shape = shape

    def read(self, indices: np.ndarray) -> np.ndarray:
        out = np.empty((len(indices), *self.shape), dtype=np.uint8)
        paths = self.paths[indices]
        if len(paths) < 2 * self.THREADS:
            for row, path in enumerate(paths):
                out[row] = decode.decode(path, self.shape)
            return out
        with ThreadPoolExecutor(self.THREADS) as pool:
            for row, image in enumerate(pool.map(lambda p: decode.decode(p, self.shape), paths)):
                out[row] = image
        return out
