"""Dataset files: official checksums, clear errors for bad files, the stratified split."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from fmnist import dataset
from fmnist.dataset import Split
from fmnist.errors import DataError
from fmnist.train.data import make_dataset


def test_official_files_verify_and_load(data_dir: Path) -> None:
    test = dataset.load_test(data_dir)
    assert test.images.shape == (10000, 28, 28) and test.images.dtype == np.uint8
    assert test.labels.shape == (10000,) and test.labels.dtype == np.uint8
    assert np.bincount(test.labels).tolist() == [1000] * 10
    # Mean pixel of the official test set (documented with the data: 0.2868).
    assert test.images.mean() / 255 == pytest.approx(0.2868, abs=5e-4)


def _copy_data(data_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "fmnist"
    copy.mkdir()
    for official in dataset.OFFICIAL_FILES:
        shutil.copy(data_dir / official.name, copy / official.name)
    return copy


def test_truncated_file_is_named(data_dir: Path, tmp_path: Path) -> None:
    copy = _copy_data(data_dir, tmp_path)
    path = copy / dataset.TEST_LABELS.name
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(
        DataError,
        match=r"t10k-labels-idx1-ubyte.gz: truncated: 1000 bytes, "
        r"expected 5148",
    ):
        dataset.load_test(copy)


def test_altered_file_fails_checksum(data_dir: Path, tmp_path: Path) -> None:
    copy = _copy_data(data_dir, tmp_path)
    path = copy / dataset.TEST_LABELS.name
    raw = bytearray(path.read_bytes())
    raw[-20] ^= 0xFF  # same size, different content
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"altered: SHA-256 .* does not match the official 67da17"):
        dataset.load_test(copy)


def test_missing_file_and_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        dataset.load_test(tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: missing"):
        dataset.load_test(tmp_path)


def test_data_dir_resolution_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(dataset.DATA_DIR_ENV, raising=False)
    assert dataset.resolve_data_dir() == Path("~/.keras/datasets/fashion-mnist").expanduser()
    monkeypatch.setenv(dataset.DATA_DIR_ENV, str(tmp_path))
    assert dataset.resolve_data_dir() == tmp_path
    assert dataset.resolve_data_dir(tmp_path / "x") == tmp_path / "x"


def test_read_idx_round_trip_and_bad_magic(tmp_path: Path) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 0x08, 3]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(tmp_path / "a.idx.gz", "wb") as handle:
        handle.write(header + array.tobytes())
    np.testing.assert_array_equal(dataset.read_idx(tmp_path / "a.idx.gz"), array)
    (tmp_path / "short.idx").write_bytes(header + array.tobytes()[:-1])
    with pytest.raises(DataError, match="header promises"):
        dataset.read_idx(tmp_path / "short.idx")
    (tmp_path / "png.idx").write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(DataError, match="bad magic"):
        dataset.read_idx(tmp_path / "png.idx")


def test_split_is_stratified_disjoint_and_seeded(data_dir: Path) -> None:
    full = dataset.load_train(data_dir)
    train_idx, val_idx = dataset.split_indices(full.labels, 0.1, seed=42)
    assert len(train_idx) == 54000 and len(val_idx) == 6000
    assert not set(train_idx) & set(val_idx)
    assert len(set(train_idx) | set(val_idx)) == 60000
    assert np.bincount(full.labels[val_idx]).tolist() == [600] * 10
    again, _ = dataset.split_indices(full.labels, 0.1, seed=42)
    other, _ = dataset.split_indices(full.labels, 0.1, seed=7)
    np.testing.assert_array_equal(train_idx, again)
    assert not np.array_equal(train_idx, other)

    train, validation = dataset.split_train_validation(full, 0.1, seed=42)
    np.testing.assert_array_equal(validation.images, full.images[val_idx])
    small = dataset.subset(train, 1000, seed=0)
    assert len(small) == 1000 and np.bincount(small.labels).tolist() == [100] * 10


@pytest.mark.parametrize(
    ("random_erasing", "training", "erased_share"),
    [
        (1.0, True, (0.9, 1.0)),
        (0.0, True, (0.0, 0.0)),
        (1.0, False, (0.0, 0.0)),
    ],
)
def test_random_erasing_blacks_out_the_inside_of_training_images_only(
    random_erasing: float, training: bool, erased_share: tuple[float, float]
) -> None:
    # White images: shifts of up to 2 px only blacken a 2 px border, so a black pixel
    # further inside can only come from an erased rectangle.
    white = Split(np.full((256, 28, 28), 255, np.uint8), np.zeros(256, np.uint8))
    batches = make_dataset(
        white,
        batch_size=256,
        num_classes=10,
        training=training,
        augment=True,
        random_erasing=random_erasing,
    )
    images = next(iter(batches))[0].numpy()
    share = float((images[:, 3:-3, 3:-3, 0] == 0).any(axis=(1, 2)).mean())
    assert erased_share[0] <= share <= erased_share[1]


def test_shifts_move_whole_pixels_so_shifted_images_stay_sharp() -> None:
    # A black-and-white checkerboard: a fractional shift would blend neighbours into grey.
    board = (np.indices((28, 28)).sum(axis=0) % 2 * 255).astype(np.uint8)
    images = Split(np.repeat(board[None], 64, axis=0), np.zeros(64, np.uint8))
    batches = make_dataset(images, batch_size=64, num_classes=10, training=True, augment=True)
    pixels = next(iter(batches))[0].numpy()
    assert not ((pixels > 0.01) & (pixels < 0.99)).any()
    assert not np.array_equal(pixels[..., 0], images.images / 255.0)  # it did shift or flip
