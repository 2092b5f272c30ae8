"""TrainConfig: every check of its validation table, clear type errors, and config files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fmnist.train.config import CHECKS, QUICK, ConfigError, TrainConfig, load_config

# field -> (a value its check refuses, the message that names it)
REFUSED = {
    "width": (0, "width must be >= 1, got 0"),
    "depth": (5, r"depth must be between 1 and 4 \(the image halves per block\), got 5"),
    "first_block_convs": (3, "first_block_convs must be 1 or 2, got 3"),
    "dense_units": (0, "dense_units must be >= 1, got 0"),
    "dropout": (1.5, r"dropout must be in \[0, 1\), got 1.5"),
    "bn_momentum": (1.0, r"bn_momentum must be in \(0, 1\), got 1.0"),
    "optimizer": ("adamx", "optimizer must be one of adam, adamw, sgd, got 'adamx'"),
    "learning_rate": (-1.0, "learning_rate must be > 0, got -1.0"),
    "weight_decay": (-0.1, "weight_decay must be >= 0, got -0.1"),
    "lr_schedule": (
        "one-cycle",
        "lr_schedule must be one of cosine, onecycle, constant, plateau, got 'one-cycle'",
    ),
    "warmup_epochs": (-1, "warmup_epochs must be >= 0, got -1"),
    "label_smoothing": (1.0, r"label_smoothing must be in \[0, 1\), got 1.0"),
    "random_erasing": (1.5, r"random_erasing must be in \[0, 1\], got 1.5"),
    "horizontal_flip": ("yes", "horizontal_flip must be one of auto, on, off, got 'yes'"),
    "ema_momentum": (1.0, r"ema_momentum must be in \[0, 1\) \(0 switches EMA off\)"),
    "precision": ("float16", "precision must be one of auto, float32, bfloat16"),
    "epochs": (0, "epochs must be >= 1, got 0"),
    "steps_per_execution": (0, "steps_per_execution must be >= 1, got 0"),
    "batch_size": (0, "batch_size must be >= 1, got 0"),
    "early_stopping_patience": (0, "early_stopping_patience must be >= 1, got 0"),
    "val_fraction": (0.5, r"val_fraction must be in \(0, 0.5\), got 0.5"),
    "train_subset": (99, "train_subset must be >= 100 or unset, got 99"),
}

# Options whose experiments lost (docs/accuracy.md): a config that still sets one is refused.
REMOVED = (
    "residual",
    "pool_padding",
    "relu_max",
    "first_block_dropout",
    "fast_dropout",
    "shift_interpolation",
    "refit",
)


def test_every_check_names_a_field_and_has_a_refused_value() -> None:
    fields = set(TrainConfig.__dataclass_fields__)
    checked = [name for name, _, _ in CHECKS]
    assert len(checked) == len(set(checked)) and set(checked) <= fields
    assert set(REFUSED) == set(checked)


@pytest.mark.parametrize("field", sorted(REFUSED))
def test_a_refused_value_is_a_one_line_error_naming_the_field(field: str) -> None:
    value, message = REFUSED[field]
    with pytest.raises(ConfigError, match=f"^config: {message}") as raised:
        TrainConfig(**{field: value})
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("config", [TrainConfig(), TrainConfig().replace(**QUICK)])
def test_the_defaults_and_the_quick_settings_pass_every_check(config: TrainConfig) -> None:
    assert TrainConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"optimizer": "adamx"}, "optimizer must be one of adam, adamw, sgd, got 'adamx'"),
        ({"epochs": "ten"}, "epochs must be a int, got 'ten'"),
        ({"augment": 1}, "augment must be a bool"),
        ({"learning_rate": "fast"}, "learning_rate must be a float"),
        ({"precision": 16}, "precision must be a string"),
        ({"widht": 32}, "unknown field"),
    ],
)
def test_bad_config_file_values_are_named(fields: dict, message: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(fields))
    with pytest.raises(ConfigError, match=message):
        load_config(path)


@pytest.mark.parametrize("field", REMOVED)
def test_a_config_setting_a_removed_option_fails_naming_it(field: str, tmp_path: Path) -> None:
    path = tmp_path / "old.toml"
    path.write_text(f"[train]\n{field} = true\n")
    with pytest.raises(ConfigError, match=f"old.toml: unknown field\\(s\\) {field}; known: ") as e:
        load_config(path)
    assert "\n" not in str(e.value)


def test_toml_config_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[train]\nwidth = 24\nlearning_rate = 1e-3\naugment = false\n")
    config = load_config(path, epochs=3)
    assert (config.width, config.learning_rate, config.augment, config.epochs) == (
        24,
        1e-3,
        False,
        3,
    )
