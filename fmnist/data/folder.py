"""The folder reader: a folder per class, as keras.utils.image_dataset_from_directory reads.

    D/train/<class>/*.png and D/test/<class>/*.png    (the split is the user's), or
    D/<class>/*.png                                    (split into train and test by seed)

Class names are the folder names in sorted order, or the order of D/classes.txt (which may
also name folders called 0, 1, ...: "T-shirt/top" cannot be a folder's name). Only each
file's header is read here; pixels are decoded when a split is read (fmnist.data.source).
TF-free.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
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
    """The usable image files of one tree (paths relative to the dataset's root, as bytes:
    a few bytes an image, however many there are), their labels, how many images have each
    size and colour, and what was skipped."""

    paths: list[bytes] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    probes: Counter[Probe] = field(default_factory=Counter)
    skipped: int = 0
    first_skipped: tuple[str, str] | None = None  # (path, why)


def class_folders(root: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))


def is_folder_dataset(root: Path) -> bool:
    return root.is_dir() and bool(class_folders(root))


def split_layout(root: Path) -> bool:
    """True for D/train/ + D/test/, False for one tree of class folders."""
    present = [name for name in SPLIT_FOLDERS if (root / name).is_dir()]
    if len(present) == 1:
        missing = next(name for name in SPLIT_FOLDERS if name not in present)
        raise DataError(
            f"{root}: has {present[0]}/ but no {missing}/ (give both, or put the class "
            "folders directly in it to split them by seed)"
        )
    return len(present) == 2


def class_names(root: Path, folders: list[str]) -> tuple[list[str], tuple[str, ...]]:
    """(folders in label order, class names): the folder names, sorted, unless classes.txt
    orders them, or names folders called 0, 1, ... (label i is folder "i", named line i)."""
    listed = read_class_names(root / CLASSES_FILE)
    numbered = [str(i) for i in range(len(folders))]
    if listed is None:
        order, names = folders, tuple(folders)
    elif set(listed) == set(folders):
        order, names = list(listed), listed
    elif len(listed) == len(folders) and set(folders) == set(numbered):
        order, names = numbered, listed
    else:
        raise DataError(
            f"{root / CLASSES_FILE}: its names {sorted(listed)} are not the class folders "
            f"{folders} (nor one name for each of the folders 0..{len(folders) - 1})"
        )
    if len(names) < 2:
        raise DataError(f"{root}: one class folder ({names[0]!r}); a classifier needs 2 or more")
    return order, names


def scan(root: Path, tree: Path, folders: list[str]) -> Scan:
    """Every image file under tree/<folder>/ (nested folders too; label: the folder's
    position in `folders`), each probed (threads would only contend for the GIL)."""
    found = Scan()
    for label, name in enumerate(folders):
        if not (tree / name).is_dir():
            continue
        for path in _image_files(tree / name):
            result = probe(path)
            if isinstance(result, str):
                found.skipped += 1
                found.first_skipped = found.first_skipped or (path, result)
                continue
            found.paths.append(os.fsencode(os.path.relpath(path, root)))
            found.labels.append(label)
            found.probes[result] += 1
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
    folders, names = class_names(root, class_folders(trees[0]))
    for tree in trees[1:]:
        extra = sorted(set(class_folders(tree)) - set(folders))
        if extra:
            raise DataError(f"{tree}: class folders {extra} are not in {trees[0]}")
    scans = [scan(root, tree, folders) for tree in trees]
    probes = sum((s.probes for s in scans), Counter())
    if not probes:
        raise DataError(f"{root}: no readable images ({', '.join(sorted(EXTENSIONS))}) found")
    if len({label for s in scans for label in s.labels}) < 2:
        raise DataError(f"{root}: all images are in one class; a classifier needs 2 or more")
    shape, notes = _decide_shape(probes, image_size)
    notes = _skip_notes(root, scans) + notes
    contract = InputContract(shape[0], shape[1], shape[2], names)
    pools = [
        (FileSource(root, np.array(s.paths), np.array(s.labels, dtype=np.int64), shape), tree.name)
        for s, tree in zip(scans, trees, strict=True)
    ]
    return contract, pools, notes


def _decide_shape(
    probes: Counter[Probe], image_size: tuple[int, int] | None
) -> tuple[tuple[int, int, int], list[str]]:
    """The most common size (or `image_size`), and RGB if any image is in colour."""
    sizes: Counter[tuple[int, int]] = Counter()
    for found, count in probes.items():
        sizes[found.height, found.width] += count
    height, width = image_size or sizes.most_common(1)[0][0]
    channels = 3 if any(found.colour for found in probes) else 1
    total, notes = probes.total(), []
    resized = total - sizes[height, width]
    if resized:
        why = "as asked" if image_size else "the size most images have"
        notes.append(f"resized {resized} of {total} images to {height}x{width} ({why})")
    grey = sum(count for found, count in probes.items() if not found.colour)
    if channels == 3 and grey:
        notes.append(f"converted {grey} grayscale images to RGB (the others are in colour)")
    return (height, width, channels), notes


def _skip_notes(root: Path, scans: list[Scan]) -> list[str]:
    skipped = sum(s.skipped for s in scans)
    if not skipped:
        return []
    path, why = next(s.first_skipped for s in scans if s.first_skipped)
    first = os.path.relpath(path, root)
    return [f"skipped {skipped} unreadable image files (e.g. {first}: {why})"]
