"""fmnist.data's readers on tiny datasets written in tmp_path: IDX, folders of images, .npz.

Each case builds a dataset, opens it, and checks what open_dataset decided (kind, shape,
class names, split sizes, notes) or the one-line DataError it gave. No TensorFlow.
"""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmnist.data import Dataset, open_dataset
from fmnist.errors import DataError, UserError
from fmnist.run_dir import RunDir

RNG = np.random.default_rng(0)


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    return header + array.astype(np.uint8).tobytes()


def write_idx(root: Path, train=(20, 3), test=(10, 3), side=5, gz=True, classes=None) -> Path:
    """Four IDX files: `count` images per split with labels cycling over `num_classes`."""
    root.mkdir(parents=True, exist_ok=True)
    for prefix, (count, num_classes) in (("train", train), ("t10k", test)):
        images = RNG.integers(0, 256, (count, side, side), dtype=np.uint8)
        labels = np.arange(count) % num_classes
        for kind, array, dims in (("images", images, 3), ("labels", labels, 1)):
            name = f"{prefix}-{kind}-idx{dims}-ubyte" + (".gz" if gz else "")
            data = _idx_bytes(array)
            (root / name).write_bytes(gzip.compress(data) if gz else data)
    if classes:
        (root / "classes.txt").write_text("\n".join(classes) + "\n")
    return root


def save_image(path: Path, size=(8, 8), mode="RGB", fmt=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    bands = len(Image.new(mode, (1, 1)).getbands())
    pixels = RNG.integers(0, 256, (size[0], size[1], bands), dtype=np.uint8)
    image = Image.fromarray(pixels.squeeze(-1) if bands == 1 else pixels)
    image.convert(mode).save(path, format=fmt)


def write_folder(root: Path, classes=("a", "b"), per_class=10, split=True, **image) -> Path:
    ext = {"JPEG": ".jpg", "BMP": ".bmp", "GIF": ".gif"}.get(image.get("fmt"), ".png")
    trees = [("train", per_class), ("test", max(2, per_class // 2))] if split else [("", per_class)]
    for tree, count in trees:
        for name in classes:
            for index in range(count):
                save_image(root / tree / name / f"{index}{ext}", **image)
    return root


def write_npz(path: Path, compressed=False, **overrides) -> Path:
    arrays = {
        "x_train": RNG.integers(0, 256, (30, 6, 6), dtype=np.uint8),
        "y_train": np.arange(30) % 3,
        "x_test": RNG.integers(0, 256, (9, 6, 6), dtype=np.uint8),
        "y_test": np.arange(9) % 3,
    }
    arrays.update(overrides)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


# (name, build(tmp_path) -> dataset path, kind, shape, class names, (train, val, test) sizes)
GOOD: list[tuple[str, Callable[[Path], Path], str, tuple, tuple, tuple]] = [
    ("idx gz", lambda p: write_idx(p / "d"), "idx", (5, 5, 1), ("0", "1", "2"), (17, 3, 10)),
    ("idx raw", lambda p: write_idx(p / "d", gz=False), "idx", (5, 5, 1), ("0", "1", "2"), None),
    (
        "idx classes.txt",
        lambda p: write_idx(p / "d", classes=["cat", "dog", "owl"]),
        "idx",
        (5, 5, 1),
        ("cat", "dog", "owl"),
        None,
    ),
    ("folder rgb", lambda p: write_folder(p / "d"), "folder", (8, 8, 3), ("a", "b"), (18, 2, 10)),
    (
        "folder grey one tree",
        lambda p: write_folder(p / "d", per_class=20, split=False, mode="L"),
        "folder",
        (8, 8, 1),
        ("a", "b"),
        (28, 4, 8),
    ),
    (
        "folder jpeg",
        lambda p: write_folder(p / "d", fmt="JPEG"),
        "folder",
        (8, 8, 3),
        ("a", "b"),
        None,
    ),
    (
        "folder bmp",
        lambda p: write_folder(p / "d", fmt="BMP", mode="L"),
        "folder",
        (8, 8, 1),
        None,
        None,
    ),
    ("folder gif", lambda p: write_folder(p / "d", fmt="GIF"), "folder", (8, 8, 3), None, None),
    ("npz", lambda p: write_npz(p / "d.npz"), "npz", (6, 6, 1), ("0", "1", "2"), (27, 3, 9)),
    (
        "npz compressed rgb names",
        lambda p: write_npz(
            p / "d.npz",
            compressed=True,
            x_train=RNG.integers(0, 256, (30, 4, 5, 3), dtype=np.uint8),
            x_test=RNG.integers(0, 256, (9, 4, 5, 3), dtype=np.uint8),
            y_train=(np.arange(30) % 3).reshape(-1, 1).astype(np.uint8),
            class_names=np.array(["x", "y", "z"]),
        ),
        "npz",
        (4, 5, 3),
        ("x", "y", "z"),
        None,
    ),
]


@pytest.mark.parametrize(("build", "kind", "shape", "names", "sizes"), [c[1:] for c in GOOD],
                         ids=[c[0] for c in GOOD])  # fmt: skip
def test_reader_decides_the_contract(tmp_path, build, kind, shape, names, sizes) -> None:
    data = open_dataset(build(tmp_path))
    assert data.kind == kind
    assert data.contract.shape == shape
    if names:
        assert data.class_names == names
    if sizes:
        assert tuple(data.size(s) for s in ("train", "validation", "test")) == sizes
    images, labels = next(data.batches("train", batch_size=4))
    assert images.dtype == np.uint8 and images.shape == (4, *shape)
    assert labels.dtype == np.int64


def _truncated_png(root: Path) -> None:
    data = (root / "train" / "a" / "0.png").read_bytes()
    (root / "train" / "a" / "broken.png").write_bytes(data[: len(data) // 2])


def _mixed_sizes(root: Path) -> None:
    save_image(root / "train" / "b" / "big.png", size=(16, 12))


def _one_grey(root: Path) -> None:
    save_image(root / "test" / "a" / "grey.png", mode="L")


# (name, change to a good 2-class folder dataset, note fragment)
NOTES = [
    ("truncated", _truncated_png, "skipped 1 unreadable image files (e.g. train/a/broken.png"),
    ("not an image", lambda r: (r / "train/a/x.png").write_text("hi"), "skipped 1 unreadable"),
    ("mixed sizes", _mixed_sizes, "resized 1 of 31 images to 8x8 (the size most images have)"),
    ("grey among rgb", _one_grey, "converted 1 grayscale images to RGB"),
    ("one tree", None, "20% of each class is the test set"),
]


@pytest.mark.parametrize(("change", "note"), [n[1:] for n in NOTES], ids=[n[0] for n in NOTES])
def test_folder_notes_say_what_was_done(tmp_path: Path, change, note: str) -> None:
    root = write_folder(tmp_path / "d", split=change is not None)
    (tmp_path / "d" / "notes.txt").write_text("ignored: not an image extension")
    if change:
        change(root)
    data = open_dataset(root)
    assert any(note in line for line in data.notes), data.notes
    assert note in data.describe()
    for images, _ in data.batches("train"):  # skipped files are never decoded
        assert images.shape[1:] == data.contract.shape


def test_folder_image_size_resizes_every_image(tmp_path: Path) -> None:
    data = open_dataset(write_folder(tmp_path / "d"), image_size=(4, 6))
    assert data.contract.shape == (4, 6, 3)
    assert data.load("test").images.shape == (10, 4, 6, 3)
    assert "resized 30 of 30 images to 4x6 (as asked)" in data.notes


def test_folder_classes_txt_orders_the_classes(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "d", classes=("a", "b", "c"))
    (root / "classes.txt").write_text("c\na\nb\n")
    data = open_dataset(root)
    assert data.class_names == ("c", "a", "b")
    first_c = np.asarray(Image.open(root / "test" / "c" / "0.png"))
    assert data.labels("test")[0] == 0 and (data.load("test").images[0] == first_c).all()


def test_folder_pixels_are_the_files(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "d", mode="L", per_class=4)
    data = open_dataset(root)
    expected = np.asarray(Image.open(root / "test" / "a" / "0.png"))
    assert (data.load("test").images[0, :, :, 0] == expected).all()


def _hostile_npz(tmp_path: Path) -> Path:
    """x_train's header claims 10^12 bytes; the file holds a few."""
    path = tmp_path / "d.npz"
    header = b"{'descr': '|u1', 'fortran_order': False, 'shape': (1000000, 1000, 1000), }"
    header += b" " * (127 - 10 - len(header)) + b"\n"
    bogus = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\0" * 64
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x_train.npy", bogus)
        for name in ("y_train", "x_test", "y_test"):
            buffer = io.BytesIO()
            np.save(buffer, np.zeros(3, np.uint8))
            archive.writestr(f"{name}.npy", buffer.getvalue())
    return path


# (name, build(tmp_path) -> path, message fragment)
BAD: list[tuple[str, Callable[[Path], Path], str]] = [
    ("nothing there", lambda p: p / "nowhere", "no such file or directory"),
    ("empty dir", lambda p: p, "no dataset found"),
    (
        "folders without images",
        lambda p: (p / "a").mkdir() or (p / "b").mkdir() or p,
        "no readable images",
    ),
    ("one class folder", lambda p: write_folder(p / "d", classes=("a",)), "one class folder"),
    (
        "images in one class only",
        lambda p: (
            write_folder(p / "d") and [f.unlink() for f in (p / "d").glob("*/b/*")] and p / "d"
        ),
        "all images are in one class",
    ),
    (
        "classes.txt not the folders",
        lambda p: (write_folder(p / "d") / "classes.txt").write_text("a\nz\n") and p / "d",
        "are not the class folders",
    ),
    (
        "test class unknown",
        lambda p: save_image(p / "test/zz/0.png") or write_folder(p),
        "class folders ['zz'] are not in",
    ),
    ("idx one label", lambda p: write_idx(p / "d", train=(20, 1), test=(5, 1)), "one label"),
    (
        "idx label out of range",
        lambda p: write_idx(p / "d", classes=["x", "y"]),
        "labels out of range 0-1",
    ),
    (
        "idx missing file",
        lambda p: (write_idx(p / "d") / "t10k-labels-idx1-ubyte.gz").unlink() or p / "d",
        "without its t10k-labels",
    ),
    ("npz missing array", lambda p: write_npz(p / "d.npz", y_test=None), "no y_test"),
    (
        "npz float images",
        lambda p: write_npz(p / "d.npz", x_train=np.zeros((30, 6, 6))),
        "must be uint8 pixels",
    ),
    (
        "npz label negative",
        lambda p: write_npz(p / "d.npz", y_test=np.array([0, 1, -1] * 3)),
        "3 labels out of range 0-2 (e.g. label -1 at index 2)",
    ),
    (
        "npz label beyond names",
        lambda p: write_npz(
            p / "d.npz", y_test=np.array([0, 1, 7] * 3), class_names=np.array(list("abc"))
        ),
        "3 labels out of range 0-2 (e.g. label 7 at index 2)",
    ),
    (
        "npz names too few",
        lambda p: write_npz(p / "d.npz", class_names=np.array(["a", "b"])),
        "out of range 0-1",
    ),
    (
        "npz count mismatch",
        lambda p: write_npz(p / "d.npz", y_test=np.arange(8) % 3),
        "x_test has 9 images, y_test 8",
    ),
    (
        "npz shape mismatch",
        lambda p: write_npz(p / "d.npz", x_test=np.zeros((9, 7, 6), np.uint8)),
        "test images are [7, 6, 1]",
    ),
    ("npz hostile header", _hostile_npz, "header promises shape [1000000, 1000, 1000]"),
    (
        "npz pickled names",
        lambda p: write_npz(p / "d.npz", class_names=np.array(["a", 1, 2], dtype=object)),
        "pickles are never loaded",
    ),
    (
        "npz not a zip",
        lambda p: (p / "d.npz").write_bytes(b"PK junk") and p / "d.npz",
        "not a readable .npz",
    ),
    (
        "npz tiny class",
        lambda p: write_npz(p / "d.npz", y_train=np.array([0] * 29 + [1])),
        "cannot split off a validation set",
    ),
]


@pytest.mark.parametrize(("build", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_one_line(tmp_path: Path, build, message: str) -> None:
    with pytest.raises(DataError) as caught:
        open_dataset(build(tmp_path))
    text = str(caught.value)
    assert message in text and "\n" not in text


def test_truncated_jpeg_stops_with_one_line_naming_the_file(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "d", fmt="JPEG", size=(32, 32))
    jpeg = root / "test" / "b" / "1.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:-150])
    data = open_dataset(root)  # a JPEG header reads fine: the decode finds it
    with pytest.raises(DataError, match=r"1\.jpg: cannot decode the image") as caught:
        data.load("test")
    assert "\n" not in str(caught.value)


def test_split_is_seeded_stratified_and_disjoint(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "d.npz")
    first, again = open_dataset(path, seed=1), open_dataset(path, seed=1)
    other = open_dataset(path, seed=2)
    assert (first.labels("validation") == again.labels("validation")).all()
    assert (np.bincount(first.labels("validation")) == 1).all()
    train, val = (first.load(s).images for s in ("train", "validation"))
    assert not {x.tobytes() for x in train} & {x.tobytes() for x in val}
    assert not np.array_equal(first.load("validation").images, other.load("validation").images)


def test_sample_and_batches_agree_with_load(tmp_path: Path) -> None:
    data = open_dataset(write_folder(tmp_path / "d", per_class=12))
    whole = data.load("train")
    batched = np.concatenate([images for images, _ in data.batches("train", batch_size=5)])
    assert (batched == whole.images).all()
    sample = data.sample("train", 6, seed=0)
    assert sample.shape == (6, 8, 8, 3)
    assert (sample == data.sample("train", 6, seed=0)).all()
    assert len(data.sample("train", 10_000, seed=0)) == data.size("train")


def _run_on(tmp_path: Path, contract: dict | None, dataset: Path) -> RunDir:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"val_fraction": 0.2, "seed": 3}))
    (run / "run.json").write_text(json.dumps({"data_dir": str(dataset)}))
    if contract:
        (run / "input.json").write_text(json.dumps(contract))
    return RunDir(run)


def test_run_dir_opens_its_data_with_its_split(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "d.npz")
    contract = {"height": 6, "width": 6, "channels": 1, "class_names": ["0", "1", "2"]}
    data = _run_on(tmp_path, contract, path).open_data()
    assert isinstance(data, Dataset) and data.path == path
    assert data.size("validation") == 6  # the run's 20%, not the default 10%


def test_run_dir_refuses_data_of_another_contract(tmp_path: Path) -> None:
    run = _run_on(tmp_path, None, write_npz(tmp_path / "d.npz"))  # no input.json: Fashion-MNIST
    with pytest.raises(UserError, match=r"but .* was trained on 28x28x1 uint8, 10 classes"):
        run.open_data()


def test_importing_the_data_api_loads_no_tensorflow(python_without) -> None:
    result = python_without("import fmnist.data, fmnist.run_dir", blocked=("tensorflow", "keras"))
    assert result.returncode == 0, result.stderr
