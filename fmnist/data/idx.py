"""The IDX reader: four files in MNIST's layout (Fashion-MNIST, MNIST, or any other).

Fashion-MNIST is recognised by its official sizes and then verified by checksum, so an
altered copy is an error, not a new dataset. Other IDX data takes its class names from
classes.txt, else "0".."K-1". IDX files are small enough to hold in memory. TF-free.
"""

from __future__ import annotations

import re
from pathlib import Path

from fmnist import dataset as fashion
from fmnist.contract import FASHION_MNIST, InputContract
from fmnist.data.labels import (
    CLASSES_FILE,
    as_images,
    check_labels,
    default_class_names,
    read_class_names,
)
from fmnist.data.source import ArraySource
from fmnist.errors import DataError

# train-images-idx3-ubyte.gz, and the dotted spelling some mirrors use (train-images.idx3-ubyte).
_NAME = re.compile(r"^(train|t10k)-(images|labels)[.-]idx[13]-ubyte(\.gz)?$")
_PARTS = ("train", "images"), ("train", "labels"), ("t10k", "images"), ("t10k", "labels")


def find_files(directory: Path) -> dict[tuple[str, str], Path]:
    """The IDX files in `directory`, keyed by (train|t10k, images|labels)."""
    found: dict[tuple[str, str], Path] = {}
    for path in sorted(directory.iterdir()):
        match = _NAME.match(path.name)
        if match and path.is_file():
            found.setdefault((match[1], match[2]), path)
    return found


def is_idx_dir(directory: Path) -> bool:
    return directory.is_dir() and bool(find_files(directory))


def _is_fashion_mnist(directory: Path) -> bool:
    """The official names at the official sizes: verify them (an altered copy is an error)."""
    paths = [directory / f.name for f in fashion.OFFICIAL_FILES]
    return all(
        path.is_file() and path.stat().st_size == official.size
        for path, official in zip(paths, fashion.OFFICIAL_FILES, strict=True)
    )


def read(directory: Path) -> tuple[InputContract, ArraySource, ArraySource]:
    """The contract and the train and test pools of an IDX directory."""
    if _is_fashion_mnist(directory):
        train, test = fashion.load_train(directory), fashion.load_test(directory)
        pools = [
            (as_images(s.images, "Fashion-MNIST"), check_labels(s.labels, 10, "Fashion-MNIST"))
            for s in (train, test)
        ]
        return FASHION_MNIST, ArraySource(*pools[0]), ArraySource(*pools[1])
    files = find_files(directory)
    missing = [f"{a}-{b}" for a, b in _PARTS if (a, b) not in files]
    if missing:
        raise DataError(f"{directory}: IDX dataset without its {', '.join(missing)} file(s)")
    arrays = {part: fashion.read_idx(path) for part, path in files.items()}
    raw_labels = [arrays["train", "labels"], arrays["t10k", "labels"]]
    names = read_class_names(directory / CLASSES_FILE)
    if names is None:
        names = default_class_names(raw_labels, str(directory))
    pools = []
    for part in ("train", "t10k"):
        where = str(files[part, "images"])
        images = as_images(arrays[part, "images"], where)
        labels = check_labels(arrays[part, "labels"], len(names), str(files[part, "labels"]))
        if len(labels) != len(images):
            raise DataError(f"{where}: {len(images)} images but {len(labels)} labels")
        pools.append(ArraySource(images, labels))
    height, width, channels = pools[0].shape
    contract = InputContract(height, width, channels, names)
    return contract, pools[0], pools[1]
