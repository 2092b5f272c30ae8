"""The test images a parity check sends, streamed in batches from the bundle's data.

Edge, served and Pi parity all compare a deployed model with the float reference outputs
the bundle recorded on its test split; this opens that split (any dataset form
`fmnist.data` reads, folder images resized to the bundle's size) and checks, before any
image is sent, that it is the data the bundle was made from: the same image shape and
classes, and the labels' count and checksum. TF-free.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from fmnist.data import Dataset, open_dataset
from fmnist.errors import UserError
from fmnist.manifest import Manifest


def open_test_split(
    manifest: Manifest, data_dir: str | os.PathLike | None = None
) -> tuple[Dataset, np.ndarray]:
    """The bundle's dataset and its test labels (int64 [N]), checked against the bundle."""
    contract = manifest.contract
    data = open_dataset(data_dir, image_size=(contract.height, contract.width))
    theirs = data.contract
    if theirs.shape != contract.shape or theirs.num_classes != contract.num_classes:
        raise UserError(
            f"{data.path}: {theirs.describe()}, but the bundle's model takes "
            f"{contract.describe()} (pass the bundle's dataset with --data-dir)"
        )
    labels = np.asarray(data.labels("test"), dtype=np.int64)
    expected = manifest.reference.num_examples
    if len(labels) != expected:
        raise UserError(
            f"{data.path}: {len(labels)} test images, but the bundle's reference outputs are "
            f"for {expected} (pass the bundle's dataset with --data-dir)"
        )
    manifest.check_labels(labels)
    return data, labels


def parity_batches(
    manifest: Manifest, data_dir: str | os.PathLike | None = None, batch_size: int = 1000
) -> tuple[np.ndarray, Iterator[np.ndarray]]:
    """(the checked test labels, the test images as uint8 [n, H, W, C] batches in order)."""
    data, labels = open_test_split(manifest, data_dir)
    return labels, (images for images, _ in data.batches("test", batch_size))
