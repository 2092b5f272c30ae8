"""Dataset: one labelled image dataset, whatever its files, split into train, validation and
test by the run's seed, read in batches, whole, as a sample, or as a streaming tf.data
pipeline. TF-free at import (TensorFlow only inside `tf_dataset`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmnist.contract import InputContract
from fmnist.data.source import ArraySource, FileSource
from fmnist.errors import DataError

SPLITS = ("train", "validation", "test")
Source = ArraySource | FileSource


@dataclass(frozen=True)
class Split:
    """Images uint8 [N, H, W, C] and labels int64 [N]."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted positions (kept, split off): stratified by class, seeded, disjoint; the same
    call as fmnist.dataset.split_indices, so Fashion-MNIST keeps its old split."""
    from sklearn.model_selection import train_test_split

    # A small dataset still gets one image of every class in the part split off.
    classes = len(np.unique(labels))
    size = fraction if math.ceil(fraction * len(labels)) >= classes else classes
    try:
        kept, taken = train_test_split(
            np.arange(len(labels)), test_size=size, stratify=labels, random_state=seed
        )
    except ValueError as err:  # too few images of some class, or too few in all
        counts = np.bincount(labels)
        raise DataError(
            f"cannot split off a {what} set ({fraction:.0%} of {len(labels)} images, "
            f"fewest in a class: {counts[counts > 0].min()}): {err}"
        ) from None
    return np.sort(kept), np.sort(taken)


@dataclass
class Dataset:
    kind: str  # "idx" | "folder" | "npz"
    path: Path
    contract: InputContract
    notes: list[str]
    _parts: dict[str, tuple[Source, np.ndarray]] = field(repr=False)

    @classmethod
    def from_pools(
        cls,
        kind: str,
        path: Path,
        contract: InputContract,
        train: tuple[Source, np.ndarray],
        test: tuple[Source, np.ndarray],
        *,
        val_fraction: float,
        seed: int,
        notes: list[str] | None = None,
    ) -> Dataset:
        """Carve validation out of `train` (source, indices): stratified and seeded."""
        source, indices = train
        if test[0].shape != source.shape:
            raise DataError(
                f"{path}: test images are {list(test[0].shape)}, train images {list(source.shape)}"
            )
        if len(test[1]) == 0:
            raise DataError(f"{path}: no test images")
        kept, taken = stratified_split(source.labels[indices], val_fraction, seed, "validation")
        parts = {
            "train": (source, indices[kept]),
            "validation": (source, indices[taken]),
            "test": test,
        }
        return cls(kind, path, contract, list(notes or []), parts)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.contract.class_names

    def describe(self) -> str:
        sizes = ", ".join(f"{self.size(s)} {s}" for s in SPLITS)
        text = f"{self.kind} dataset {self.path}: {self.contract.describe()}; {sizes} images"
        return "; ".join([text, *self.notes])

    def _part(self, split: str) -> tuple[Source, np.ndarray]:
        if split not in self._parts:
            raise ValueError(f"unknown split {split!r} (one of {', '.join(SPLITS)})")
        return self._parts[split]

    def size(self, split: str) -> int:
        return len(self._part(split)[1])

    def labels(self, split: str) -> np.ndarray:
        source, indices = self._part(split)
        return source.labels[indices]

    def batches(self, split: str, batch_size: int = 256) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(uint8 [n, H, W, C], int64 [n]) in the split's fixed order; one batch in memory."""
        source, indices = self._part(split)
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            yield source.read(chunk), source.labels[chunk]

    def load(self, split: str) -> Split:
        """The whole split in memory (a large folder dataset: use batches or tf_dataset)."""
        source, indices = self._part(split)
        return Split(source.read(indices), source.labels[indices])

    def subset_indices(self, split: str, count: int, seed: int) -> np.ndarray:
        """Positions in the split of a stratified, seeded sample of `count` (all if fewer):
        the same call as fmnist.dataset.subset, so quick runs and calibration keep theirs."""
        labels = self.labels(split)
        if count >= len(labels):
            return np.arange(len(labels))
        from sklearn.model_selection import train_test_split

        keep, _ = train_test_split(
            np.arange(len(labels)), train_size=count, stratify=labels, random_state=seed
        )
        return np.sort(keep)

    def sample(self, split: str, count: int, seed: int) -> np.ndarray:
        """uint8 images of a stratified, seeded sample (e.g. int8 calibration)."""
        source, indices = self._part(split)
        return source.read(indices[self.subset_indices(split, count, seed)])

    def tf_dataset(
        self,
        split: str,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        shard: tuple[int, int] | None = None,
        subset: int | None = None,
    ) -> Any:
        """tf.data batches of (uint8 [b, H, W, C], int64 [b]), decoded as they stream.

        `shard=(num_workers, index)` keeps this worker's share before anything is decoded;
        `subset` trains on a stratified sample of that many images (seeded by `seed`)."""
        from fmnist.data.streaming import make_tf_dataset

        source, indices = self._part(split)
        if subset is not None:
            indices = indices[self.subset_indices(split, subset, seed)]
        return make_tf_dataset(source, indices, batch_size, shuffle=shuffle, seed=seed, shard=shard)
