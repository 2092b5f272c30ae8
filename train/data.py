"""Fashion-MNIST for training: the download through Keras and the tf.data input.

Loading the verified files and the seeded split are in fmnist.dataset (export needs them too).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from fmnist import dataset
from fmnist.dataset import Split
from fmnist.errors import DataError


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
    """The directory to load from; with `download`, the official files are fetched through
    Keras first if any is missing there."""
    directory = dataset.resolve_data_dir(data_dir)
    if download and not all((directory / f.name).is_file() for f in dataset.OFFICIAL_FILES):
        directory = download_with_keras(directory)
    return directory


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
    """A tf.data pipeline of (float image [B,28,28,1] in [0,1], one-hot label) batches.

    Augmentation (random shifts by whole pixels, up to 2, horizontal flips and, with
    probability `random_erasing`, one black rectangle) runs on training batches only; the
    validation and test pipelines see the images unchanged.
    """
    import keras
    import tensorflow as tf

    from fmnist.preprocessing import preprocess

    ds = tf.data.Dataset.from_tensor_slices((split.images, split.labels))
    if training:
        ds = ds.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    ds = ds.map(
        lambda x, y: (preprocess(x), tf.one_hot(tf.cast(y, tf.int32), num_classes)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    if training and augment:
        layers = [
            keras.layers.RandomTranslation(
                2 / 28,
                2 / 28,
                fill_mode="constant",
                interpolation="nearest",  # whole pixels: as sharp as the test images
                fill_value=0.0,
                seed=seed,
            ),
            keras.layers.RandomFlip("horizontal", seed=seed + 1),
        ]
        if random_erasing:
            # Black like the background; a (p, p) factor is a fixed probability p per image
            # (a single float would draw the probability itself from [0, p]).
            layers.append(
                keras.layers.RandomErasing(
                    factor=(random_erasing, random_erasing),
                    scale=(0.02, 0.25),
                    fill_value=0.0,
                    value_range=(0.0, 1.0),
                    seed=seed + 2,
                )
            )
        augmenter = keras.Sequential(layers, name="augmentation")
        ds = ds.map(
            lambda x, y: (augmenter(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE
        )
    # Multi-worker training shards by element (there are no files to shard by).
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
