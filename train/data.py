"""Training input: the Fashion-MNIST download through Keras, and the tf.data pipelines that
scale, one-hot and augment a Dataset's streaming batches (fmnist.data).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fmnist import dataset
from fmnist.contract import InputContract
from fmnist.dataset import Split
from fmnist.errors import DataError

if TYPE_CHECKING:
    from fmnist.data import Dataset
    from fmnist.train.config import TrainConfig


def download_with_keras(target: Path | None = None) -> Path:
    """Fetch the official files through Keras (only when the user asks: --download).

    Keras keeps them in its cache folder; with `target`, they are copied there as well.
    """
    import keras

    try:
        keras.datasets.fashion_mnist.load_data()
    except Exception as err:  # network errors come in many types
        raise DataError(f"download through Keras failed: {err}") from None
    cache = dataset.KERAS_CACHE_DIR.expanduser()
    if target is None or target.resolve() == cache.resolve():
        return cache
    target.mkdir(parents=True, exist_ok=True)
    for official in dataset.OFFICIAL_FILES:
        shutil.copyfile(cache / official.name, target / official.name)
    return target


def data_dir_for(data_dir: str | os.PathLike | None, *, download: bool) -> Path:
    """The directory to load from; with `download`, Fashion-MNIST's official files are
    fetched through Keras first if any is missing there (and no other dataset is)."""
    directory = dataset.resolve_data_dir(data_dir)
    other_data = directory.is_file() or any(p.is_dir() for p in _entries(directory))
    if (
        download
        and not other_data
        and not all((directory / f.name).is_file() for f in dataset.OFFICIAL_FILES)
    ):
        directory = download_with_keras(directory)
    return directory


def flip_makes_sense(setting: str, class_names: tuple[str, ...]) -> bool:
    """Horizontal flips for "on", none for "off"; for "auto", flips unless every class is a
    digit, a letter or a number, whose mirror images are other classes or none."""
    if setting != "auto":
        return setting == "on"
    return not all(len(name) == 1 or name.isdigit() for name in class_names)


def training_dataset(
    data: Dataset, config: TrainConfig, *, shard: tuple[int, int] | None = None
) -> tuple[Any, int]:
    """The shuffled, augmented training batches (sharded by worker) and how many images
    one epoch holds (the config's train_subset, if set)."""
    subset = config.train_subset or None
    stream = data.tf_dataset(
        "train",
        config.batch_size,
        shuffle=True,
        seed=config.seed,
        shard=shard,
        subset=subset,
    )
    images = min(subset or data.size("train"), data.size("train"))
    flip = flip_makes_sense(config.horizontal_flip, data.class_names)
    augment = Augment(config.random_erasing, flip) if config.augment else None
    return prepare(stream, data.contract, augment=augment, seed=config.seed), images


def evaluation_dataset(data: Dataset, split: str, batch_size: int = 1024) -> Any:
    """A split's batches in order, scaled and one-hot, for validation."""
    return prepare(data.tf_dataset(split, batch_size), data.contract)


@dataclass(frozen=True)
class Augment:
    random_erasing: float = 0.0
    flip: bool = True


def prepare(stream: Any, contract: InputContract, *, augment: Augment | None = None, seed=42):
    """(uint8 images, labels) batches -> (float images scaled by `contract`, one-hot labels).

    Augmentation (random shifts by whole pixels, 2 px at 28 px and in proportion, horizontal
    flips where `augment.flip` says so and, with probability `random_erasing`, one black
    rectangle) is for training batches only."""
    import tensorflow as tf

    classes = contract.num_classes
    ds = stream.map(
        lambda x, y: (contract.scale_tensor(x), tf.one_hot(tf.cast(y, tf.int32), classes)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    if augment is not None:
        augmenter = _augmenter(contract, augment, seed)
        ds = ds.map(
            lambda x, y: (augmenter(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE
        )
    return ds.prefetch(tf.data.AUTOTUNE)


def _augmenter(contract: InputContract, augment: Augment, seed: int) -> Any:
    import keras

    shift = [max(1, round(side * 2 / 28)) / side for side in (contract.height, contract.width)]
    layers = [
        keras.layers.RandomTranslation(
            *shift,
            fill_mode="constant",
            interpolation="nearest",  # whole pixels: as sharp as the test images
            fill_value=0.0,
            seed=seed,
        )
    ]
    if augment.flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed + 1))
    if augment.random_erasing:
        # Black like the background; a (p, p) factor is a fixed probability p per image
        # (a single float would draw the probability itself from [0, p]).
        p = augment.random_erasing
        layers.append(
            keras.layers.RandomErasing(
                factor=(p, p),
                scale=(0.02, 0.25),
                fill_value=0.0,
                value_range=(0.0, 1.0),
                seed=seed + 2,
            )
        )
    return keras.Sequential(layers, name="augmentation")


def _entries(directory: Path) -> list[Path]:
    return list(directory.iterdir()) if directory.is_dir() else []


def make_dataset(
    split: Split,
    *,
    batch_size: int,
    num_classes: int,
    training: bool,
    augment: bool = False,
    random_erasing: float = 0.0,
    seed: int = 42,
):
    """In-memory images (uint8 [N, H, W] or [N, H, W, C]) as prepared batches: the pipeline
    `training_dataset` builds from a Dataset, for tests and benchmarks on arrays."""
    import tensorflow as tf

    images = split.images[..., np.newaxis] if split.images.ndim == 3 else split.images
    height, width, channels = images.shape[1:]
    names = tuple(str(i) for i in range(num_classes))
    contract = InputContract(int(height), int(width), int(channels), names)
    ds = tf.data.Dataset.from_tensor_slices((images, split.labels))
    if training:
        ds = ds.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    # Multi-worker training shards by element (there are no files to shard by).
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    ds = ds.with_options(options)
    mode = Augment(random_erasing, flip=True) if training and augment else None
    return prepare(ds, contract, augment=mode, seed=seed)
