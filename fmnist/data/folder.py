"""The folder reader: a folder per class, as keras.utils.image_dataset_from_directory reads.

    D/train/<class>/*.png and D/test/<class>/*.png    (the split is the user's), or
    D/<class>/*.png                                    (split into train and test by seed)

Class names are the folder names in sorted order, or the order of D/classes.txt. Only each
file's header is read here; pixels are decoded when a split is read (fmnist.data.source).
TF-free.
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmnist.contract import InputContract
from fmnist.data.decode import EXTENSIONS, Probe, probe
from fmnist.data.labels import CLASSES_FILE, read_class_names
from fmnist.data.source import FileSource
from fmnist.errors import DataError

SPLIT_FOLDERS = ("train", "test")


@dataclass
class Scan:
    """The usable image files of one tree, their labels and probes, and what was skipped."""

    paths: list[str]
    labels: list[int]
    probes: list[Probe]
    skipped: list[tuple[str, str]]  # (path, why)


def class_folders(root: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))


def is_folder_dataset(root: Path) -> bool:
    return root.is_dir() and bool(class_folders(root))


def split_layout(root: Path) -> bool:
    """True for D/train/ + D/test/, False for one tree of class folders."""
    return all((root / name).is_dir() for name in SPLIT_FOLDERS)


def class_names(root: Path, folders: list[str]) -> tuple[str, ...]:
    """Folder names, sorted, unless classes.txt orders them."""
    listed = read_class_names(root / CLASSES_FILE)
    if listed is None:
        names = tuple(folders)
    elif set(listed) == set(folders):
        names = listed
    else:
        raise DataError(
            f"{root / CLASSES_FILE}: its names {sorted(listed)} are not the class folders {folders}"
        )
    if len(names) < 2:
        raise DataError(f"{root}: one class folder ({names[0]!r}); a classifier needs 2 or more")
    return names


def scan(tree: Path, names: tuple[str, ...]) -> Scan:
    """Every image file under tree/<class>/ (nested folders too), probed in parallel."""
    found = Scan([], [], [], [])
    files, labels = [], []
    for label, name in enumerate(names):
        if not (tree / name).is_dir():
            continue
        for path in _image_files(tree / name):
            files.append(path)
            labels.append(label)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(probe, files, chunksize=64))
    for path, label, result in zip(files, labels, results, strict=True):
        if isinstance(result, str):
            found.skipped.append((path, result))
        else:
            found.paths.append(path)
            found.labels.append(label)
            found.probes.append(result)
    return found


def _image_files(folder: Path) -> list[str]:
    out = []
    for directory, subdirs, filenames in os.walk(folder, followlinks=True):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for filename in sorted(filenames):
            if os.path.splitext(filename)[1].lower() in EXTENSIONS:
                out.append(os.path.join(directory, filename))
    return out


def read(
    root: Path, image_size: tuple[int, int] | None
) -> tuple[InputContract, list[tuple[FileSource, str]], list[str]]:
    """The contract, one (pool, tree name) per tree (train and test, or the one tree), and
    notes on what was skipped, resized or converted."""
    trees = [root / name for name in SPLIT_FOLDERS] if split_layout(root) else [root]
    folders = class_folders(trees[0])
    names = class_names(root, folders)
    for tree in trees[1:]:
        extra = sorted(set(class_folders(tree)) - set(names))
        if extra:
            raise DataError(f"{tree}: class folders {extra} are not in {trees[0]}")
    scans = [scan(tree, names) for tree in trees]
    probes = [p for s in scans for p in s.probes]
    if not probes:
        raise DataError(f"{root}: no readable images ({', '.join(sorted(EXTENSIONS))}) found")
    used = {label for s in scans for label in s.labels}
    if len(used) < 2:
        raise DataError(f"{root}: all images are in one class; a classifier needs 2 or more")
    shape, notes = _decide_shape(probes, image_size)
    notes = _skip_notes(root, scans) + notes
    contract = InputContract(shape[0], shape[1], shape[2], names)
    pools = [
        (FileSource(np.array(s.paths), np.array(s.labels, dtype=np.int64), shape), tree.name)
        for s, tree in zip(scans, trees, strict=True)
    ]
    return contract, pools, notes


def _decide_shape(
    probes: list[Probe], image_size: tuple[int, int] | None
) -> tuple[tuple[int, int, int], list[str]]:
    """The most common size (or `image_size`), and RGB if any image is in colour."""
    sizes = Counter((p.height, p.width) for p in probes)
    common = sizes.most_common(1)[0][0]
    height, width = image_size or common
    channels = 3 if any(p.colour for p in probes) else 1
    notes = []
    resized = sum(count for size, count in sizes.items() if size != (height, width))
    if resized:
        why = "as asked" if image_size else "the size most images have"
        notes.append(f"resized {resized} of {len(probes)} images to {height}x{width} ({why})")
    grey = sum(not p.colour for p in probes)
    if channels == 3 and grey:
        notes.append(f"converted {grey} grayscale images to RGB (the others are in colour)")
    return (height, width, channels), notes


def _skip_notes(root: Path, scans: list[Scan]) -> list[str]:
    skipped = [item for s in scans for item in s.skipped]
    if not skipped:
        return []
    path, why = skipped[0]
    first = os.path.relpath(path, root)
    return [f"skipped {len(skipped)} unreadable image files (e.g. {first}: {why})"]
