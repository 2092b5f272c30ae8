"""Any labelled image dataset, detected from its files: IDX (Fashion-MNIST, MNIST, ...), a
folder per class, or a Keras-style .npz. TF-free at import (numpy and Pillow).

    data = open_dataset("photos/")            # or RunDir(run).open_data()
    data.contract                             # 32x32x3, class names from the folders
    for images, labels in data.batches("test"): ...
    data.tf_dataset("train", 128, shuffle=True, seed=42)   # streams, decodes lazily
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fmnist import dataset as fashion
from fmnist.data import folder, idx, npz
from fmnist.data.dataset import SPLITS, Dataset, Split, stratified_split
from fmnist.errors import DataError

__all__ = ["SPLITS", "TEST_FRACTION", "DataError", "Dataset", "Split", "open_dataset"]

# A folder dataset without train/ and test/ keeps this share of each class for testing.
TEST_FRACTION = 0.2


def open_dataset(
    data_dir: str | os.PathLike | None = None,
    *,
    val_fraction: float = 0.1,
    seed: int = 42,
    image_size: tuple[int, int] | None = None,
) -> Dataset:
    """The dataset at `data_dir` (else $FMNIST_DATA_DIR, else Keras' Fashion-MNIST cache),
    its kind detected from its files; validation is split from train by `seed`."""
    path = fashion.resolve_data_dir(data_dir)
    split = {"val_fraction": val_fraction, "seed": seed}
    if npz.is_npz(path):
        contract, train, test = npz.read(path)
        return Dataset.from_pools("npz", path, contract, _all(train), _all(test), **split)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if idx.is_idx_dir(path):
        contract, train, test = idx.read(path)
        return Dataset.from_pools("idx", path, contract, _all(train), _all(test), **split)
    if folder.is_folder_dataset(path):
        return _open_folder(path, image_size, **split)
    raise DataError(
        f"{path}: no dataset found (expected the four IDX files, a folder per class of "
        "images, or a .npz file with x_train, y_train, x_test, y_test)"
    )


def _all(source) -> tuple:
    return source, np.arange(len(source.labels))


def _open_folder(
    path: Path, image_size: tuple[int, int] | None, *, val_fraction: float, seed: int
) -> Dataset:
    contract, pools, notes = folder.read(path, image_size)
    if len(pools) == 2:
        (train, _), (test, _) = pools
        if not len(train.labels):
            raise DataError(f"{path / 'train'}: no readable images")
        return Dataset.from_pools(
            "folder",
            path,
            contract,
            _all(train),
            _all(test),
            val_fraction=val_fraction,
            seed=seed,
            notes=notes,
        )
    ((tree, _),) = pools
    kept, held = stratified_split(tree.labels, TEST_FRACTION, seed, "test")
    notes.append(f"no train/ and test/ folders: {TEST_FRACTION:.0%} of each class is the test set")
    return Dataset.from_pools(
        "folder",
        path,
        contract,
        (tree, kept),
        (tree, held),
        val_fraction=val_fraction,
        seed=seed,
        notes=notes,
    )
