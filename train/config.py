"""The one typed config of the training stage, with the defaults that measured best.

A config file (TOML or JSON) overrides any subset of fields; unknown keys and bad values are
user errors with a message that names the field. What each default measured against its
alternatives is in docs/accuracy.md.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmnist.errors import UserError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("cosine", "onecycle", "constant", "plateau")
PRECISIONS = ("auto", "float32", "bfloat16")
FLIPS = ("auto", "on", "off")


class ConfigError(UserError):
    """A config file or value is invalid."""


@dataclass(frozen=True)
class TrainConfig:
    # Architecture: `depth` blocks of 3x3 conv-BN-ReLU and a 2x2 max-pool, block i with
    # width * 2**i filters, then one dense layer and a 10-way softmax (806k parameters).
    width: int = 32
    depth: int = 3
    first_block_convs: int = 1  # the other blocks have two
    dense_units: int = 256
    dropout: float = 0.05  # after every block; twice that (at most 0.5) after the dense layer
    batch_norm: bool = True
    fused_batch_norm: bool = True  # train BN with TF's fused kernel: Keras' maths, faster on CPU
    bn_momentum: float = 0.9  # Keras' 0.99 leaves short runs with stale moving statistics
    # Optimisation.
    optimizer: str = "adamw"
    learning_rate: float = 4e-3  # one-cycle's peak; the starting rate of the other schedules
    weight_decay: float = 1e-4  # decoupled and on kernels only, so it scales with the rate
    # "onecycle": 30% rise from rate/25, then a cosine fall to ~0 (warmup_epochs unused);
    # "cosine": linear warmup from a tenth of the rate over `warmup_epochs`, cosine decay to 1%.
    lr_schedule: str = "onecycle"
    warmup_epochs: int = 1
    label_smoothing: float = 0.1  # also narrows the logits, so int8's top scores tie less
    # Augmentation of training batches: whole-pixel shifts of up to 2 px and horizontal flips,
    # then (with probability `random_erasing`) one black rectangle of 2-25% of the image.
    augment: bool = True
    random_erasing: float = 0.0
    # "auto" flips unless the classes are digits or letters (a mirrored 2 is no 2); on, off.
    horizontal_flip: str = "auto"
    # Weight EMA (0 = off): validation, early stopping and the saved model use the averaged
    # weights; it averages ~1/(1 - momentum) steps, so it is for long runs.
    ema_momentum: float = 0.0
    # "auto": bfloat16 mixed precision where the CPU trains faster in it (train/precision.py).
    # The saved model is float32 either way.
    precision: str = "auto"
    epochs: int = 30
    # Steps per call into the compiled graph: the same maths with less Python between steps.
    steps_per_execution: int = 32
    batch_size: int = 128
    early_stopping_patience: int = 8
    seed: int = 42
    # Data.
    val_fraction: float = 0.1
    train_subset: int | None = None  # use only this many training images (quick runs)

    def __post_init__(self) -> None:
        for name, ok, rule in CHECKS:
            value = getattr(self, name)
            if not ok(value):
                raise ConfigError(f"config: {name} {rule}, got {value!r}")

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> TrainConfig:
        """Build a config from a mapping, checking names and types before values."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(
                f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(fields)}"
            )
        defaults = cls()
        values = {}
        for name, value in data.items():
            values[name] = _coerce(name, value, getattr(defaults, name), where)
        return cls(**values)


def _choice(name: str, choices: tuple[str, ...]) -> tuple[str, Callable[[Any], bool], str]:
    return name, lambda value: value in choices, f"must be one of {', '.join(choices)}"


# (field, check, message): TrainConfig refuses a value that fails its field's check.
CHECKS: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("width", lambda v: v >= 1, "must be >= 1"),
    ("depth", lambda v: 1 <= v <= 4, "must be between 1 and 4 (the image halves per block)"),
    ("first_block_convs", lambda v: v in (1, 2), "must be 1 or 2"),
    ("dense_units", lambda v: v >= 1, "must be >= 1"),
    ("dropout", lambda v: 0.0 <= v < 1.0, "must be in [0, 1)"),
    ("bn_momentum", lambda v: 0.0 < v < 1.0, "must be in (0, 1)"),
    _choice("optimizer", OPTIMIZERS),
    ("learning_rate", lambda v: math.isfinite(v) and v > 0, "must be > 0"),
    ("weight_decay", lambda v: v >= 0, "must be >= 0"),
    _choice("lr_schedule", SCHEDULES),
    ("warmup_epochs", lambda v: v >= 0, "must be >= 0"),
    ("label_smoothing", lambda v: 0.0 <= v < 1.0, "must be in [0, 1)"),
    ("random_erasing", lambda v: 0.0 <= v <= 1.0, "must be in [0, 1]"),
    _choice("horizontal_flip", FLIPS),
    ("ema_momentum", lambda v: 0.0 <= v < 1.0, "must be in [0, 1) (0 switches EMA off)"),
    _choice("precision", PRECISIONS),
    ("epochs", lambda v: v >= 1, "must be >= 1"),
    ("steps_per_execution", lambda v: v >= 1, "must be >= 1"),
    ("batch_size", lambda v: v >= 1, "must be >= 1"),
    ("early_stopping_patience", lambda v: v >= 1, "must be >= 1"),
    ("val_fraction", lambda v: 0.0 < v < 0.5, "must be in (0, 0.5)"),
    ("train_subset", lambda v: v is None or v >= 100, "must be >= 100 or unset"),
)

# Fields that may be unset (None) in a config.
_OPTIONAL = {"train_subset"}


def _coerce(name: str, value: Any, default: Any, where: str) -> Any:
    """`value` as the type of the field's default (an int is taken for a float)."""
    if value is None and name in _OPTIONAL:
        return None
    expected = int if name in _OPTIONAL else type(default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is expected:  # exact: a bool is no int here, an int no string
        return value
    kind = "string" if expected is str else expected.__name__
    raise ConfigError(f"{where}: {name} must be a {kind}, got {value!r}")


def load_config(
    path: str | Path | None = None, *, quick: bool = False, **overrides: Any
) -> TrainConfig:
    """Defaults, then the quick settings (`quick`), then the TOML/JSON file (if any), then
    explicit overrides (e.g. from flags): what a user wrote always wins."""
    data: dict[str, Any] = dict(QUICK) if quick else {}
    if path is not None:
        data.update(read_config_file(Path(path)))
    data.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_dict(data, where=str(path) if path else "config")


def read_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"{path}: config must be a .toml or .json file")
    except (ValueError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: cannot parse: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: config must be a table/object of fields")
    # Accept the fields at top level or under a [train] table.
    return data.get("train", data) if isinstance(data.get("train"), dict) else data


# A small model on a subset: trains in well under a minute and still clearly beats chance.
QUICK: dict[str, Any] = {
    "width": 16,
    "depth": 2,
    "first_block_convs": 2,
    "dense_units": 64,
    "epochs": 3,
    "batch_size": 128,
    "augment": False,
    "warmup_epochs": 0,
    "early_stopping_patience": 3,
    "train_subset": 12000,
    # Three epochs are too few for one-cycle's slow start. Label smoothing stays: without it
    # int8's top scores tie often enough to fail export's class gate (docs/accuracy.md).
    "lr_schedule": "cosine",
    "learning_rate": 2e-3,
}


def quick_config(base: TrainConfig | None = None) -> TrainConfig:
    """`base` (default: the defaults) with the quick settings."""
    return (base or TrainConfig()).replace(**QUICK)
