"""Training with Keras `fit`: validation monitoring, early stopping, TensorBoard and CSV logs.

`train` writes the run directory that every later stage reads (fmnist.run_dir): the model
with the best validation weights, its config, facts about the run, the per-epoch history
(loss and accuracy, train and validation, and the learning rate) and TensorBoard logs.
"""

from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from fmnist import __version__
from fmnist.contract import FASHION_MNIST, InputContract
from fmnist.data import Dataset, open_dataset
from fmnist.data.streaming import data_errors
from fmnist.dataset import FashionMNIST
from fmnist.run_dir import RunDir
from fmnist.train import data as train_data
from fmnist.train.config import TrainConfig
from fmnist.train.distribute import (
    is_multi_worker,
    prepare_multi_worker_fit,
    worker_dir,
    worker_shard,
)
from fmnist.train.model import build_model
from fmnist.train.precision import cpu_prefers_bfloat16


@dataclass
class TrainResult:
    run_dir: Path
    model: keras.Model
    history: dict[str, list[float]]
    epochs_run: int
    best_epoch: int
    wall_time_s: float
    images_per_s: float


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and TF, and make TF ops deterministic: same seed, same run."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


# Variable names weight decay leaves alone: batch norm's gamma and beta, and biases.
DECAY_EXEMPT = ["gamma", "beta", "bias"]


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    lr: Any = config.learning_rate
    if config.lr_schedule == "cosine":
        warmup_steps = config.warmup_epochs * steps_per_epoch
        total_steps = max(1, config.epochs * steps_per_epoch - warmup_steps)
        lr = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=config.learning_rate / 10
            if warmup_steps
            else config.learning_rate,
            decay_steps=total_steps,
            alpha=0.01,
            warmup_target=config.learning_rate if warmup_steps else None,
            warmup_steps=warmup_steps,
        )
    elif config.lr_schedule == "onecycle":
        lr = one_cycle_schedule(config.learning_rate, config.epochs * steps_per_epoch)
    ema = {"use_ema": True, "ema_momentum": config.ema_momentum} if config.ema_momentum else {}
    if config.optimizer == "adam":
        return keras.optimizers.Adam(lr, **ema)
    # Keras decouples the decay from the gradient: each step multiplies a kernel by
    # (1 - weight_decay * current rate), so the decay scales with the schedule.
    decay = config.weight_decay
    if config.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(lr, weight_decay=decay, **ema)
    else:
        optimizer = keras.optimizers.SGD(lr, momentum=0.9, nesterov=True, weight_decay=decay, **ema)
    # Decay shrinks kernels; batch norm's scale and shift and the biases are left free, as
    # is usual (decaying them only pulls the outputs toward zero).
    optimizer.exclude_from_weight_decay(var_names=DECAY_EXEMPT)
    return optimizer


def one_cycle_schedule(
    peak: float, total_steps: int
) -> keras.optimizers.schedules.LearningRateSchedule:
    """Smith's one-cycle policy as PyTorch's OneCycleLR defaults have it: a linear rise from
    peak/25 over the first 30% of the steps, then a cosine fall to peak/250,000. (Its
    momentum cycle is left out: Adam's beta_1 is not a schedule in Keras.)"""
    warmup_steps = max(1, round(0.3 * total_steps))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak / 25,
        decay_steps=max(1, total_steps - warmup_steps),
        alpha=1 / 250_000,  # of the peak: the final rate is peak / 250,000
        warmup_target=peak,
        warmup_steps=warmup_steps,
    )


def resolve_precision(precision: str) -> str:
    """The precision training will use: "auto" becomes bfloat16 where it trains faster on
    this CPU (train/precision.py) and no GPU is visible (a GPU's own choices are out of
    scope), else float32."""
    if precision != "auto":
        return precision
    if cpu_prefers_bfloat16() and not tf.config.list_physical_devices("GPU"):
        return "bfloat16"
    return "float32"


def compile_model(
    config: TrainConfig,
    steps_per_epoch: int,
    precision: str = "float32",
    contract: InputContract = FASHION_MNIST,
) -> keras.Model:
    dtype = "mixed_bfloat16" if precision == "bfloat16" else "float32"
    model = build_model(
        config,
        contract.num_classes,
        dtype=dtype,
        for_training=True,
        input_shape=contract.shape,
    )
    model.compile(
        optimizer=make_optimizer(config, steps_per_epoch),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
        steps_per_execution=config.steps_per_execution,
    )
    return model


def as_saved_model(
    model: keras.Model, config: TrainConfig, contract: InputContract = FASHION_MNIST
) -> keras.Model:
    """The same network and weights in a float32 model of Keras' own layers: mixed
    precision keeps float32 variables and the fused batch norm Keras' weights, so this
    loses nothing; export, serving and anyone loading model.keras need nothing of ours."""
    float_model = build_model(config, contract.num_classes, input_shape=contract.shape)
    float_model.set_weights(model.get_weights())
    return float_model


def _model_and_dataset(
    config: TrainConfig,
    data: Dataset,
    precision: str,
    strategy: tf.distribute.Strategy | None,
) -> tuple[keras.Model, Any, int]:
    """A compiled model (under `strategy`, if any), the shuffled, augmented input (this
    worker's shard of it) and the number of training images in an epoch."""
    dataset, images = train_data.training_dataset(data, config, shard=worker_shard(strategy))
    steps_per_epoch = math.ceil(images / config.batch_size)
    if strategy is None:
        return compile_model(config, steps_per_epoch, precision, data.contract), dataset, images
    # Keras' multi-step loop fails under tf.distribute strategies (TF 2.21: "You must feed a
    # value for placeholder tensor 'while/cond/Placeholder'"), so they run a step per call.
    with strategy.scope():
        single_steps = config.replace(steps_per_execution=1)
        model = compile_model(single_steps, steps_per_epoch, precision, data.contract)
    if is_multi_worker(strategy):
        prepare_multi_worker_fit(model, strategy, dataset)
    return model, dataset, images


def as_dataset(data: Dataset | FashionMNIST, config: TrainConfig) -> Dataset:
    """A Dataset; the old in-memory FashionMNIST (from fmnist.dataset.load_splits) is
    reopened from its directory with the config's split, which is the same one."""
    if isinstance(data, Dataset):
        return data
    return open_dataset(data.data_dir, val_fraction=config.val_fraction, seed=config.seed)


class _LearningRateLogger(keras.callbacks.Callback):
    """Adds the learning rate at the end of each epoch to the logs (and so to history.csv)."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            opt = self.model.optimizer
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(opt.learning_rate))


def _callbacks(
    config: TrainConfig, run: RunDir, verbose: int | str, extra: list | None
) -> list[keras.callbacks.Callback]:
    """The caller's callbacks, then learning-rate logging, EMA swaps, early stopping, the
    CSV history and TensorBoard (and the plateau schedule, if configured)."""
    # With EMA, the averaged weights are swapped in for validation and at each epoch's end,
    # so early stopping judges, keeps and restores the averaged weights (it must come after).
    ema = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if config.ema_momentum else []
    callbacks = [
        *(extra or []),
        _LearningRateLogger(),
        *ema,
        keras.callbacks.EarlyStopping(
            monitor="val_loss",
            patience=config.early_stopping_patience,
            restore_best_weights=True,
            verbose=1 if verbose else 0,
        ),
        keras.callbacks.CSVLogger(str(run.history_path)),
        keras.callbacks.TensorBoard(log_dir=str(run.tensorboard_dir), write_graph=False),
    ]
    if config.lr_schedule == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=0.3, patience=2, min_lr=1e-5
            )
        )
    return callbacks


def _run_info(
    config: TrainConfig,
    data: Dataset,
    hist: dict[str, list[float]],
    best_epoch: int,
    train_images: int,
    **facts: Any,
) -> dict[str, Any]:
    """run.json: versions, the data and its split, the run's facts and its best epoch."""
    return {
        "fmnist_deploy": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
        "data_dir": str(data.path),
        "data": {"kind": data.kind, "path": str(data.path), "notes": data.notes},
        "split": {
            "train": train_images,
            "validation": data.size("validation"),
            "test": data.size("test"),
            "val_fraction": config.val_fraction,
            "seed": config.seed,
        },
        **facts,
        "best_epoch": best_epoch,
        "best_val_loss": hist["val_loss"][best_epoch - 1],
        "best_val_accuracy": hist["val_accuracy"][best_epoch - 1],
    }


def train(
    config: TrainConfig,
    data: Dataset | FashionMNIST,
    run_dir: str | os.PathLike,
    *,
    verbose: int | str = "auto",
    strategy: tf.distribute.Strategy | None = None,
    callbacks: list[keras.callbacks.Callback] | None = None,
) -> TrainResult:
    """Train `config` on the train split of `data`, monitor its validation split, save
    everything in `run_dir` (non-chief workers of a multi-worker job: in
    `run_dir/workers/<type>-<index>/`). Both splits stream from `data` through tf.data."""
    data = as_dataset(data, config)
    run = RunDir(worker_dir(Path(run_dir), strategy))
    run.path.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)

    val_ds = train_data.evaluation_dataset(data, "validation")
    precision = resolve_precision(config.precision)
    model, train_ds, train_images = _model_and_dataset(config, data, precision, strategy)
    start = time.perf_counter()
    with data_errors():  # an image that fails to decode mid-epoch: its one-line error
        history = model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=config.epochs,
            callbacks=_callbacks(config, run, verbose, callbacks),
            verbose=verbose,
            shuffle=False,  # the tf.data pipeline shuffles, seeded
        )
    wall_time = time.perf_counter() - start
    return _save_run(
        run,
        config,
        data,
        model,
        history.history,
        wall_time,
        train_images,
        precision=precision,
        strategy=strategy,
    )


def _save_run(
    run: RunDir,
    config: TrainConfig,
    data: Dataset,
    model: keras.Model,
    history: dict[str, list],
    wall_time: float,
    train_images: int,
    *,
    precision: str,
    strategy: tf.distribute.Strategy | None,
) -> TrainResult:
    """Write the model (float32, Keras' own layers), config, contract and run.json."""
    hist = {key: [float(v) for v in values] for key, values in history.items()}
    epochs_run = len(hist["loss"])
    best_epoch = int(np.argmin(hist["val_loss"])) + 1
    model = as_saved_model(model, config, data.contract)
    run.save_model(model)
    run.write_config(config.to_dict())
    run.write_contract(data.contract)
    images_per_s = epochs_run * train_images / wall_time
    info = _run_info(
        config,
        data,
        hist,
        best_epoch,
        train_images,
        parameters=int(model.count_params()),
        precision=precision,
        epochs_run=epochs_run,
        wall_time_s=wall_time,
        images_per_s=images_per_s,
        strategy=type(strategy).__name__ if strategy else None,
        replicas=strategy.num_replicas_in_sync if strategy else 1,
    )
    run.write_run_info(info)
    return TrainResult(run.path, model, hist, epochs_run, best_epoch, wall_time, images_per_s)
