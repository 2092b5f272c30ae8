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


class FusedBatchNormalization(keras.layers.BatchNormalization):
    """Keras' batch norm, trained with TensorFlow's fused kernel on images.

    Keras 3 computes the batch moments and the normalization as separate ops; the fused
    kernel does each direction in one (oneDNN's on CPU): per training step x1.34 in
    float32 and x1.27 in bfloat16 on an Intel Xeon, x1.38 in bfloat16 on an AMD EPYC
    (README, "Accuracy"). Inference, and every case
    the kernel does not cover (masks, renorm, synchronized, 2-D inputs), is Keras' code.
    Only training uses it: the saved model has Keras' own layer (train.as_saved_model).
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


class FastDropout(keras.layers.Dropout):
    """Keras' dropout with a cheaper mask: each random 32-bit word decides two units.

    Dropout took 12-17% of a bfloat16 training step on 2 cores, and drawing one random
    number per unit is most of its own cost (README, "Accuracy"). A unit is dropped when
    its 16-bit half of a word is below rate * 65536, so every unit still drops
    independently with the configured rate (to 1/65536) in float32 and bfloat16 alike;
    Keras' own draws a bfloat16 uniform under mixed precision, whose 128 levels turn a
    rate of 0.05 into 0.0548. Like the fused batch norm, only training uses it: at
    inference dropout does nothing either way.
    """

    def call(self, inputs, training=False):
        if not training or not 0 < self.rate < 1 or self.noise_shape is not None:
            return super().call(inputs, training=training)
        # Keras' seed generator (one fresh seed per step); stateless ops take int32 seeds.
        seed = tf.cast(tf.math.floormod(self.seed_generator.next(), tf.int32.max - 1), tf.int32)
        shape = tf.shape(inputs)
        units = tf.reduce_prod(shape)
        words = tf.random.stateless_uniform(
            [(units + 1) // 2], seed=seed, minval=None, maxval=None, dtype=tf.uint32
        )
        halves = tf.reshape(tf.bitcast(words, tf.uint16), [-1])[:units]
        keep = tf.reshape(halves >= round(self.rate * 65536), shape)
        # The scaled mask holds constants only: the gradient is the incoming one times it.
        scale = tf.constant(1 / (1 - self.rate), inputs.dtype)
        return inputs * tf.where(keep, scale, tf.zeros_like(scale))


def build_model(
    config: TrainConfig,
    num_classes: int = NUM_CLASSES,
    *,
    dtype: str = "float32",
    for_training: bool = False,
) -> keras.Model:
    """Conv blocks (conv-BN-ReLU x1-2, max-pool, dropout), a dense layer and a softmax.

    `dtype` is a Keras dtype policy ("mixed_bfloat16" for training in bfloat16); the
    softmax stays float32 either way, so probabilities keep their precision.
    `for_training` builds batch norm as FusedBatchNormalization and dropout as FastDropout
    (if the config's `fused_batch_norm` and `fast_dropout` say so); the model to save or
    export has Keras' own layers.
    """
    batch_norm_layer = (
        FusedBatchNormalization
        if for_training and config.fused_batch_norm
        else keras.layers.BatchNormalization
    )
    dropout_layer = FastDropout if for_training and config.fast_dropout else keras.layers.Dropout
    inputs = keras.Input(shape=IMAGE_SHAPE, name="image")
    x = inputs
    for block in range(config.depth):
        name = f"block{block + 1}"
        convs = config.first_block_convs if block == 0 else 2
        block_input = x
        x = _conv_block(x, config, config.width * 2**block, convs, name, dtype, batch_norm_layer)
        if config.residual and convs == 2:
            x = _add_shortcut(block_input, x, config, name, dtype, batch_norm_layer)
        x = keras.layers.ReLU(config.relu_max or None, name=f"{name}_relu{convs}", dtype=dtype)(x)
        x = keras.layers.MaxPooling2D(
            padding=config.pool_padding, name=f"{name}_pool", dtype=dtype
        )(x)
        if config.dropout and (block > 0 or config.first_block_dropout):
            x = dropout_layer(config.dropout, name=f"{name}_dropout", dtype=dtype)(x)
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
    x = keras.layers.ReLU(config.relu_max or None, name="dense_relu", dtype=dtype)(x)
    if config.dropout:
        x = dropout_layer(min(0.5, 2 * config.dropout), name="dense_dropout", dtype=dtype)(x)
    outputs = keras.layers.Dense(
        num_classes, activation="softmax", name="probabilities", dtype="float32"
    )(x)
    return keras.Model(inputs, outputs, name="fmnist_cnn")


def _conv_bn(
    x, config: TrainConfig, filters: int, size: int, name: str, dtype: str, batch_norm_layer
):
    """A convolution (no bias when batch norm follows) and its batch norm."""
    x = keras.layers.Conv2D(
        filters,
        size,
        padding="same",
        use_bias=not config.batch_norm,
        kernel_initializer="he_normal",
        name=name.format(kind="conv"),
        dtype=dtype,
    )(x)
    if config.batch_norm:
        x = batch_norm_layer(momentum=config.bn_momentum, name=name.format(kind="bn"), dtype=dtype)(
            x
        )
    return x


def _conv_block(
    x, config: TrainConfig, filters: int, convs: int, name: str, dtype: str, batch_norm_layer
):
    """`convs` conv-BN layers with a ReLU between them; the caller applies the last ReLU,
    so a residual shortcut can join before it."""
    for conv in range(1, convs + 1):
        if conv > 1:
            x = keras.layers.ReLU(
                config.relu_max or None, name=f"{name}_relu{conv - 1}", dtype=dtype
            )(x)
        x = _conv_bn(x, config, filters, 3, f"{name}_{{kind}}{conv}", dtype, batch_norm_layer)
    return x


def _add_shortcut(block_input, x, config: TrainConfig, name: str, dtype: str, batch_norm_layer):
    """x + the block's input (projected by a 1x1 conv-BN where the width changes)."""
    shortcut = block_input
    if shortcut.shape[-1] != x.shape[-1]:
        shortcut = _conv_bn(
            shortcut, config, x.shape[-1], 1, f"{name}_shortcut_{{kind}}", dtype, batch_norm_layer
        )
    return keras.layers.Add(name=f"{name}_add", dtype=dtype)([x, shortcut])
