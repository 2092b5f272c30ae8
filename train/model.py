"""The CNN, built from a TrainConfig, and the one preprocessing step every consumer shares.

The Keras model takes float32 images [N, 28, 28, 1] in [0, 1] and returns softmax
probabilities [N, 10]. Raw uint8 pixels go through `preprocess` first; the exported
SavedModel puts that step inside its graph.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from fmnist.train.config import TrainConfig

IMAGE_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


def preprocess(images: tf.Tensor) -> tf.Tensor:
    """uint8 pixels [N, 28, 28] (or [N, 28, 28, 1]) -> float32 [N, 28, 28, 1] in [0, 1]."""
    images = tf.cast(images, tf.float32) / 255.0
    if images.shape.rank == 3:
        images = tf.expand_dims(images, -1)
    return images


def build_model(
    config: TrainConfig, num_classes: int = NUM_CLASSES, *, dtype: str = "float32"
) -> keras.Model:
    """Conv blocks (conv-BN-ReLU x1-2, max-pool, dropout), a dense layer and a softmax.

    `dtype` is a Keras dtype policy ("mixed_bfloat16" for training in bfloat16); the
    softmax stays float32 either way, so probabilities keep their precision.
    """
    inputs = keras.Input(shape=IMAGE_SHAPE, name="image")
    x = inputs
    for block in range(config.depth):
        filters = config.width * 2**block
        for conv in range(config.first_block_convs if block == 0 else 2):
            x = keras.layers.Conv2D(
                filters,
                3,
                padding="same",
                use_bias=not config.batch_norm,
                kernel_initializer="he_normal",
                name=f"block{block + 1}_conv{conv + 1}",
                dtype=dtype,
            )(x)
            if config.batch_norm:
                x = keras.layers.BatchNormalization(
                    momentum=config.bn_momentum, name=f"block{block + 1}_bn{conv + 1}", dtype=dtype
                )(x)
            x = keras.layers.ReLU(name=f"block{block + 1}_relu{conv + 1}", dtype=dtype)(x)
        x = keras.layers.MaxPooling2D(name=f"block{block + 1}_pool", dtype=dtype)(x)
        if config.dropout:
            x = keras.layers.Dropout(config.dropout, name=f"block{block + 1}_dropout", dtype=dtype)(
                x
            )
    x = keras.layers.Flatten(name="flatten", dtype=dtype)(x)
    x = keras.layers.Dense(
        config.dense_units,
        use_bias=not config.batch_norm,
        kernel_initializer="he_normal",
        name="dense",
        dtype=dtype,
    )(x)
    if config.batch_norm:
        x = keras.layers.BatchNormalization(
            momentum=config.bn_momentum, name="dense_bn", dtype=dtype
        )(x)
    x = keras.layers.ReLU(name="dense_relu", dtype=dtype)(x)
    if config.dropout:
        x = keras.layers.Dropout(min(0.5, 2 * config.dropout), name="dense_dropout", dtype=dtype)(x)
    outputs = keras.layers.Dense(
        num_classes, activation="softmax", name="probabilities", dtype="float32"
    )(x)
    return keras.Model(inputs, outputs, name="fmnist_cnn")
