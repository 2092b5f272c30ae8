"""The test images a parity check sends, streamed in batches from the bundle's data.

Edge, served and Pi parity all compare a deployed model with the float reference outputs
the bundle recorded on its test split; this opens that split (any dataset form
`fmnist.data` reads, folder images resized to the bundle's size; or just the two `t10k-*`
IDX files, all a device needs) and checks, before any image is sent, that it is the data
the bundle was made from: the image shape, the number of classes, the labels' count and
checksum. TF-free.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fmnist.contract import InputContract
from fmnist.data import folder, idx, npz, open_dataset
from fmnist.data.idx import find_files
from fmnist.dataset import read_idx, resolve_data_dir
from fmnist.errors import UserError
from fmnist.manifest import Manifest

Batches = Iterator[np.ndarray]  # uint8 [n, H, W, C], in the split's fixed order


def _test_files_only(path: Path) -> tuple[Path, Path] | None:
    """(images, labels) of an IDX directory holding the test files but no training files."""
    files = find_files(path) if path.is_dir() else {}
    test = files.get(("t10k", "images")), files.get(("t10k", "labels"))
    training = ("train", "images") in files or ("train", "labels") in files
    return test if all(test) and not training else None


def _test_arrays(path: Path, size: tuple[int, int]):
    """(contract, test source) of an .npz, a complete IDX directory or a folder dataset with
    its own test/ tree (images resized to `size`), read without the train/validation split
    (which needs scikit-learn, in neither the [client] nor the [edge] install)."""
    if folder.is_folder_dataset(path) and folder.split_layout(path):
        contract, ((_, _), (test, _)), _ = folder.read(path, size)
        return contract, test
    if npz.is_npz(path):
        contract, _, test = npz.read(path)
        return contract, test
    if idx.is_idx_dir(path) and _test_files_only(path) is None:
        contract, _, test = idx.read(path)
        return contract, test
    return None


def _open(data_dir: str | os.PathLike | None, contract: InputContract):
    """(where, shape of one image, number of classes, test labels, batches(size))."""
    path = resolve_data_dir(data_dir)
    test_files = _test_files_only(path)
    arrays = _test_arrays(path, (contract.height, contract.width))
    if arrays is not None:
        theirs, test = arrays

        count = len(test.labels)

        def pieces(size: int) -> Batches:
            return (test.read(np.arange(i, min(i + size, count))) for i in range(0, count, size))

        return str(path), theirs.shape, theirs.num_classes, test.labels, pieces
    if test_files is None:
        data = open_dataset(path, image_size=(contract.height, contract.width))

        def batches(size: int) -> Batches:
            return (images for images, _ in data.batches("test", size))

        theirs = data.contract
        return data.describe(), theirs.shape, theirs.num_classes, data.labels("test"), batches
    images, labels = (read_idx(file) for file in test_files)
    images = images.reshape(*images.shape[:3], -1)

    def slices(size: int) -> Batches:
        return (images[i : i + size] for i in range(0, len(images), size))

    classes = int(labels.max()) + 1 if len(labels) else 0
    return f"IDX test files in {path}", images.shape[1:], classes, labels, slices


def parity_batches(
    manifest: Manifest, data_dir: str | os.PathLike | None = None, batch_size: int = 1000
) -> tuple[np.ndarray, Batches]:
    """(the test labels, int64 [N], checked; the test images as uint8 [n, H, W, C] batches)."""
    contract = manifest.contract
    where, shape, classes, labels, batches = _open(data_dir, contract)
    if tuple(shape) != contract.shape or classes > contract.num_classes:
        raise UserError(
            f"{where}: {'x'.join(map(str, shape))} images of {classes} classes are not the "
            f"data of this bundle, whose model takes {contract.describe()} "
            "(pass the bundle's dataset with --data-dir)"
        )
    labels = np.asarray(labels, dtype=np.int64)
    expected = manifest.reference.num_examples
    if len(labels) != expected:
        raise UserError(
            f"{where}: {len(labels)} test images, but the bundle's reference outputs are "
            f"for {expected} (pass the bundle's dataset with --data-dir)"
        )
    manifest.check_labels(labels)
    return labels, batches(batch_size)
