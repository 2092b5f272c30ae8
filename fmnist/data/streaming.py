"""A Dataset split as tf.data: arrays slice from memory, files decode batch by batch in
parallel as the pipeline runs, so nothing holds a folder dataset whole.

Arrays go through the same ops training always used (slice, shuffle, batch), so a
Fashion-MNIST run keeps its order and its numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from fmnist.data.source import ArraySource, FileSource


def make_tf_dataset(
    source: ArraySource | FileSource,
    indices: np.ndarray,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    shard: tuple[int, int] | None,
) -> tf.data.Dataset:
    """Batches of (uint8 [b, H, W, C], int64 [b]), sharded, then shuffled, then decoded."""
    if shard is not None:
        workers, index = shard
        indices = indices[index::workers]  # what Dataset.shard keeps, before any decoding
    labels = source.labels[indices]
    if isinstance(source, ArraySource):
        ds = tf.data.Dataset.from_tensor_slices((source.read(indices), labels))
    else:
        ds = tf.data.Dataset.from_tensor_slices((indices, labels))
    if shuffle:
        ds = ds.shuffle(len(indices), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if isinstance(source, FileSource):
        ds = ds.map(_decoder(source), num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    # Sharded here, or whole on every worker: either way tf.distribute must not shard again
    # by files (there are none it knows) and should shard by element only when asked.
    policy = tf.data.experimental.AutoShardPolicy
    options.experimental_distribute.auto_shard_policy = (
        policy.OFF if shard is not None else policy.DATA
    )
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def _decoder(source: FileSource) -> Any:
    shape = source.shape

    def decode(batch_indices: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        images = tf.numpy_function(source.read, [batch_indices], tf.uint8, stateful=False)
        images.set_shape((None, *shape))
        return images, labels

    return decode
