"""Real (tiny) trainings: artifacts, beating chance, repeatability, evaluation outputs."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from fmnist.dataset import load_splits, load_train, subset


def test_tiny_run_beats_chance_and_writes_its_artifacts(tiny_run: Path) -> None:
    for name in (
        "model.keras",
        "config.json",
        "run.json",
        "history.csv",
        "metrics.json",
        "classification_report.txt",
        "confusion_matrix.png",
        "training_curves.png",
        "misclassified.png",
    ):
        assert (tiny_run / name).is_file(), name
    assert any((tiny_run / "tensorboard").rglob("events.out.tfevents.*"))
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.6  # chance is 0.1
    assert metrics["num_examples"] == 10000
    assert [row["class_id"] for row in metrics["per_class"]] == list(range(10))
    assert sum(row["support"] for row in metrics["per_class"]) == 10000
    run = json.loads((tiny_run / "run.json").read_text())
    assert run["split"] == {
        "train": 6000,
        "validation": 6000,
        "test": 10000,
        "val_fraction": 0.1,
        "seed": 42,
    }
    header = (tiny_run / "history.csv").read_text().splitlines()[0].split(",")
    assert {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"} <= set(header)


def test_saved_model_has_keras_own_batch_norm(tiny_run: Path) -> None:
    """Training's fused batch norm stays out of model.keras: plain Keras loads it."""
    import keras

    model = keras.models.load_model(tiny_run / "model.keras")
    kinds = {type(x) for x in model.layers if isinstance(x, keras.layers.BatchNormalization)}
    assert kinds == {keras.layers.BatchNormalization}


def test_same_seed_same_weights(data_dir: Path, tmp_path: Path) -> None:
    from fmnist.train.config import TrainConfig
    from fmnist.train.train import train

    config = TrainConfig(
        width=4, dense_units=8, epochs=1, train_subset=1000, augment=True, warmup_epochs=0
    )
    data = load_splits(data_dir, val_fraction=config.val_fraction, seed=config.seed)
    first = train(config, data, tmp_path / "a", verbose=0).model.get_weights()
    second = train(config, data, tmp_path / "b", verbose=0).model.get_weights()
    third = train(config.replace(seed=1), data, tmp_path / "c", verbose=0).model.get_weights()
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, c) for a, c in zip(first, third, strict=True))


def test_steps_per_execution_changes_the_speed_not_the_steps_or_the_weights(
    data_dir: Path,
) -> None:
    """1,000 images in batches of 128 are 8 steps, which 3 steps per call split 3 + 3 + 2:
    the short last call still runs, and the weights come out as with one step per call."""
    from fmnist.train import data as train_data
    from fmnist.train.config import TrainConfig
    from fmnist.train.model import NUM_CLASSES
    from fmnist.train.train import compile_model, seed_everything

    split = subset(load_train(data_dir), 1000, seed=0)
    weights = []
    for steps_per_execution in (1, 3):
        config = TrainConfig(width=4, dense_units=8, steps_per_execution=steps_per_execution)
        seed_everything(config.seed)
        dataset = train_data.make_dataset(
            split, batch_size=128, num_classes=NUM_CLASSES, training=True, augment=True
        )
        model = compile_model(config, steps_per_epoch=8)
        model.fit(dataset, epochs=1, verbose=0, shuffle=False)
        assert int(model.optimizer.iterations) == 8
        weights.append(model.get_weights())
    for one_step, three_steps in zip(*weights, strict=True):
        np.testing.assert_allclose(one_step, three_steps, rtol=1e-5, atol=1e-6)


def test_ema_weights_are_what_validation_judged_and_what_is_saved(
    data_dir: Path, tmp_path: Path
) -> None:
    import keras

    from fmnist.preprocessing import preprocess
    from fmnist.train.config import TrainConfig
    from fmnist.train.train import train

    # float32: a bfloat16 run validates in bfloat16 but saves float32 weights, which can
    # move a few borderline validation images either way.
    config = TrainConfig(
        width=4,
        dense_units=8,
        epochs=2,
        train_subset=1000,
        warmup_epochs=0,
        ema_momentum=0.9,
        precision="float32",
    )
    data = load_splits(data_dir, val_fraction=config.val_fraction, seed=config.seed)
    averaged = train(config, data, tmp_path / "ema", verbose=0)
    plain = train(config.replace(ema_momentum=0.0), data, tmp_path / "plain", verbose=0)
    saved = keras.models.load_model(tmp_path / "ema" / "model.keras")
    predicted = saved.predict(preprocess(data.validation.images), verbose=0).argmax(axis=1)
    accuracy = float((predicted == data.validation.labels).mean())
    assert accuracy == pytest.approx(averaged.history["val_accuracy"][averaged.best_epoch - 1])
    assert any(
        not np.allclose(a, b)
        for a, b in zip(saved.get_weights(), plain.model.get_weights(), strict=True)
    )


def test_bfloat16_training_saves_a_float32_model_with_the_trained_weights(
    data_dir: Path, tmp_path: Path
) -> None:
    import keras

    from fmnist.preprocessing import preprocess
    from fmnist.train.config import TrainConfig
    from fmnist.train.train import train

    config = TrainConfig(
        width=4, dense_units=8, epochs=2, train_subset=1000, warmup_epochs=0, precision="bfloat16"
    )
    data = load_splits(data_dir, val_fraction=config.val_fraction, seed=config.seed)
    result = train(config, data, tmp_path / "bf16", verbose=0)
    saved = keras.models.load_model(tmp_path / "bf16" / "model.keras")
    assert {layer.dtype_policy.name for layer in saved.layers} == {"float32"}
    predicted = saved.predict(preprocess(data.validation.images), verbose=0).argmax(axis=1)
    accuracy = float((predicted == data.validation.labels).mean())
    # Validation ran in bfloat16, the saved model in float32: the same weights, so the
    # accuracies differ only by rounding (an untrained model would be near 10%).
    assert accuracy == pytest.approx(result.history["val_accuracy"][-1], abs=0.01)


def test_one_cycle_rises_for_30_percent_of_the_steps_then_falls_to_almost_zero() -> None:
    from fmnist.train.config import TrainConfig
    from fmnist.train.train import make_optimizer

    config = TrainConfig(lr_schedule="onecycle", learning_rate=4e-3, epochs=10)
    optimizer = make_optimizer(config, steps_per_epoch=100)
    rates = []
    for step in range(0, 1001, 50):
        optimizer.iterations.assign(step)
        rates.append(float(optimizer.learning_rate))
    peak = rates.index(max(rates))
    assert peak * 50 == 300
    assert rates[0] == pytest.approx(4e-3 / 25)
    assert rates[peak] == pytest.approx(4e-3)
    assert all(a < b for a, b in itertools.pairwise(rates[: peak + 1]))
    assert all(a > b for a, b in itertools.pairwise(rates[peak:]))
    assert rates[-1] == pytest.approx(4e-3 / 250_000, rel=1e-3)


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_weight_decay_shrinks_kernels_by_rate_times_decay_and_leaves_norms_and_biases(
    optimizer: str,
) -> None:
    from fmnist.train.config import TrainConfig
    from fmnist.train.model import build_model
    from fmnist.train.train import make_optimizer

    config = TrainConfig(
        width=4,
        dense_units=8,
        optimizer=optimizer,
        weight_decay=0.5,
        lr_schedule="constant",
        learning_rate=0.1,
    )
    model = build_model(config)
    for variable in model.trainable_variables:  # no zeros, so every change shows
        variable.assign(np.full(variable.shape, 2.0, "float32"))
    # Zero gradients (and no momentum yet): only the decoupled decay moves weights.
    make_optimizer(config, steps_per_epoch=10).apply_gradients(
        [(np.zeros(v.shape, "float32"), v) for v in model.trainable_variables]
    )
    after = {v.path: float(np.asarray(v).max()) for v in model.trainable_variables}
    kernels = {path: value for path, value in after.items() if path.endswith("/kernel")}
    others = {path: value for path, value in after.items() if path not in kernels}
    assert kernels and list(kernels.values()) == [pytest.approx(2.0 * (1 - 0.5 * 0.1))] * len(
        kernels
    )
    assert {p.rsplit("/", 1)[1] for p in others} == {"gamma", "beta", "bias"}
    assert set(others.values()) == {2.0}
