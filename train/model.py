"""The CNN, built from a TrainConfig for any image shape and number of classes.

The Keras model takes float32 images [N, H, W, C] in [0, 1] and returns softmax
probabilities [N, classes] (Fashion-MNIST: 28x28x1, 10). Raw uint8 pixels are scaled by the
run's input contract first; the exported SavedModel puts that step inside its graph.
Images larger than STEM_TARGET pixels a side first pass a stem of strided convolutions
that halves them until they fit, so the conv blocks see the scale they were designed for.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from fmnist.contract import FASHION_MNIST
from fmnist.train.config import TrainConfig

IMAGE_SHAPE = FASHION_MNIST.shape  # the default; build_model takes any (H, W, C)
NUM_CLASSES = FASHION_MNIST.num_classes
STEM_TARGET = 32  # largest side the conv blocks take without a downsampling stem


class FusedBatchNormalization(keras.layers.BatchNormalization):
    """Keras' batch norm, trained with TensorFlow's fused kernel on images.

    Keras 3 computes the batch moments and the normalization as separate ops, which made
    batch norm the largest cost of a CPU training step; the fused kernel does each direction
    in one. Inference, and every case the kernel does not cover (masks, renorm, synchronized,
    2-D inputs), is Keras' code. Only training uses it: the saved model has Keras' own layer
    (train.as_saved_model), with the same weights.
    """

    def call(self, inputs, training=None, mask=None):
        if (
            not (training and self.trainable)
            or mask is not None
            or len(inputs.shape) != 4
            or self.axis not in (-1, 3)
            or self.renorm
            or self.synchronized
            or not (self.center and self.scale)
        ):
            return super().call(inputs, training=training, mask=mask)
        outputs, mean, unbiased_variance, *_ = tf.compat.v1.nn.fused_batch_norm(
            inputs,
            tf.cast(self.gamma, tf.float32),
            tf.cast(self.beta, tf.float32),
            epsilon=self.epsilon,
            is_training=True,
            data_format="NHWC",
        )
        # The kernel returns the Bessel-corrected variance; Keras averages the biased one.
        count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:3]), tf.float32)
        variance = unbiased_variance * (count - 1.0) / count
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(
            self.moving_variance * self.momentum + variance * (1.0 - self.momentum)
        )
        return tf.cast(outputs, self.compute_dtype)


def build_model(
    config: TrainConfig,
    num_classes: int = NUM_CLASSES,
    *,
    dtype: str = "float32",
    for_training: bool = False,
    input_shape: tuple[int, int, int] = IMAGE_SHAPE,
) -> keras.Model:
    """A stem where images are large, conv blocks (conv-BN-ReLU x1-2, max-pool, dropout),
    a dense layer and a softmax, for images of `input_shape` (H, W, C).

    `dtype` is a Keras dtype policy ("mixed_bfloat16" for training in bfloat16); the
    softmax stays float32 either way, so probabilities keep their precision.
    `for_training` builds batch norm as FusedBatchNormalization (if the config's
    `fused_batch_norm` says so); the model to save or export has Keras' own layers.
    """
    batch_norm_layer = (
        FusedBatchNormalization
        if for_training and config.fused_batch_norm
        else keras.layers.BatchNormalization
    )
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    for conv in range(1, stem_convs(input_shape) + 1):
        x = _conv(x, config, config.width, ("stem", conv), dtype, batch_norm_layer, strides=2)
    for block in range(config.depth):
        name = f"block{block + 1}"
        convs = config.first_block_convs if block == 0 else 2
        x = _conv_block(x, config, config.width * 2**block, convs, name, dtype, batch_norm_layer)
        # "same" padding keeps the last row and column of an odd map (7x7 pools to 4x4).
        x = keras.layers.MaxPooling2D(padding="same", name=f"{name}_pool", dtype=dtype)(x)
        if config.dropout:
            x = keras.layers.Dropout(config.dropout, name=f"{name}_dropout", dtype=dtype)(x)
    x = keras.layers.Flatten(name="flatten", dtype=dtype)(x)
    x = keras.layers.Dense(
        config.dense_units,
        use_bias=not config.batch_norm,
        kernel_initializer="he_normal",
        name="dense",
        dtype=dtype,
    )(x)
    if config.batch_norm:
        x = batch_norm_layer(momentum=config.bn_momentum, name="dense_bn", dtype=dtype)(x)
    x = keras.layers.ReLU(name="dense_relu", dtype=dtype)(x)
    if config.dropout:
        rate = min(0.5, 2 * config.dropout)
        x = keras.layers.Dropout(rate, name="dense_dropout", dtype=dtype)(x)
    outputs = keras.layers.Dense(
        num_classes, activation="softmax", name="probabilities", dtype="float32"
    )(x)
    return keras.Model(inputs, outputs, name="fmnist_cnn")


def stem_convs(input_shape: tuple[int, int, int]) -> int:
    """Strided convolutions needed to bring the larger side down to STEM_TARGET or less."""
    side, convs = max(input_shape[:2]), 0
    while side > STEM_TARGET:
        side, convs = math.ceil(side / 2), convs + 1
    return convs


def _conv_block(
    x, config: TrainConfig, filters: int, convs: int, name: str, dtype: str, batch_norm_layer
):
    """`convs` x (3x3 convolution, batch norm, ReLU); no conv bias when batch norm follows."""
    for conv in range(1, convs + 1):
        x = _conv(x, config, filters, (name, conv), dtype, batch_norm_layer)
    return x


def _conv(
    x,
    config: TrainConfig,
    filters: int,
    place: tuple[str, int],
    dtype: str,
    batch_norm_layer,
    strides: int = 1,
):
    """3x3 convolution, batch norm (if configured) and ReLU, named <prefix>_conv<n> etc."""
    prefix, number = place
    x = keras.layers.Conv2D(
        filters,
        3,
        strides=strides,
        padding="same",
        use_bias=not config.batch_norm,
        kernel_initializer="he_normal",
        name=f"{prefix}_conv{number}",
        dtype=dtype,
    )(x)
    if config.batch_norm:
        bn_name = f"{prefix}_bn{number}"
        x = batch_norm_layer(momentum=config.bn_momentum, name=bn_name, dtype=dtype)(x)
    return keras.layers.ReLU(name=f"{prefix}_relu{number}", dtype=dtype)(x)
