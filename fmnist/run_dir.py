"""The training run directory: what `fmnist train` and `fmnist evaluate` write and export reads.

Like the bundle's manifest, a contract of its own: every stage reads and writes these files
through RunDir, so none needs another stage's code to find them. TF-free: Keras is imported
only to load the model.

    RUN/model.keras                  the trained model: float [N, H, W, C] in, softmax out
    RUN/input.json                   the input contract: H, W, C, scaling, class names
    RUN/config.json                  the effective TrainConfig (its split: val_fraction, seed)
    RUN/run.json                     data directory and kind, split, timing and parameter facts
    RUN/history.csv, tensorboard/    per-epoch metrics and learning rate; TensorBoard logs
    RUN/metrics.json                 from `evaluate`: test accuracy, macro and per-class figures
    RUN/classification_report.txt    from `evaluate`: scikit-learn's text report
    RUN/confusion_matrix.png, training_curves.png, misclassified.png   from `evaluate`
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmnist.contract import CONTRACT_FILE, FASHION_MNIST, InputContract
from fmnist.dataset import FashionMNIST, load_splits
from fmnist.errors import DataError, UserError

if TYPE_CHECKING:
    from fmnist.data import Dataset

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
RUN_FILE = "run.json"
HISTORY_FILE = "history.csv"
TENSORBOARD_DIR = "tensorboard"
METRICS_FILE = "metrics.json"
REPORT_FILE = "classification_report.txt"
CONFUSION_MATRIX_PLOT = "confusion_matrix.png"
TRAINING_CURVES_PLOT = "training_curves.png"
MISCLASSIFIED_PLOT = "misclassified.png"


@dataclass(frozen=True)
class ValidationSplit:
    """How a run split the 60,000 training images (fmnist.dataset.load_splits' arguments)."""

    val_fraction: float
    seed: int


def _file(name: str) -> property:
    return property(lambda run: run.path / name, doc=f"RUN/{name}")


class RunDir:
    """One run directory. Nothing is read until asked; a missing or malformed file is a
    one-line UserError that names it."""

    model_path = _file(MODEL_FILE)
    config_path = _file(CONFIG_FILE)
    run_path = _file(RUN_FILE)
    history_path = _file(HISTORY_FILE)
    tensorboard_dir = _file(TENSORBOARD_DIR)
    metrics_path = _file(METRICS_FILE)
    report_path = _file(REPORT_FILE)
    confusion_matrix_plot = _file(CONFUSION_MATRIX_PLOT)
    training_curves_plot = _file(TRAINING_CURVES_PLOT)
    misclassified_plot = _file(MISCLASSIFIED_PLOT)

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def check(self) -> RunDir:
        """This run directory, if it exists and holds a model."""
        if not self.path.is_dir():
            raise UserError(f"{self.path}: no such run directory")
        self._require_model()
        return self

    def train_config(self) -> dict[str, Any]:
        """config.json: the TrainConfig the run was trained with, as a dict."""
        return _read_json(self.config_path)

    def run_info(self) -> dict[str, Any]:
        """run.json: data directory, split, versions, timing and parameter facts."""
        return _read_json(self.run_path)

    def split(self) -> ValidationSplit:
        """The validation split the run was trained with, from config.json."""
        config, where = self.train_config(), self.config_path
        for key in ("val_fraction", "seed"):
            if key not in config:
                raise UserError(f"{where}: no {key!r} (the run's validation split)")
        fraction, seed = config["val_fraction"], config["seed"]
        if not isinstance(fraction, float) or not 0 < fraction < 1:
            raise UserError(f"{where}: val_fraction must be a number in (0, 1), got {fraction!r}")
        if type(seed) is not int:
            raise UserError(f"{where}: seed must be a whole number, got {seed!r}")
        return ValidationSplit(fraction, seed)

    def data_dir(self) -> Path | None:
        """The data directory (or .npz file) run.json names, if it still exists (None for a
        run trained elsewhere, or without run.json: the usual lookup applies)."""
        if not self.run_path.is_file():
            return None
        recorded = self.run_info().get("data_dir")
        return Path(recorded) if recorded and Path(recorded).exists() else None

    def open_data(self, data_dir: str | os.PathLike | None = None) -> Dataset:
        """The run's dataset (fmnist.data) with the run's split and image size: from
        `data_dir`, else the run's data directory, else the usual lookup. Data that does not
        fit the run's contract (shape or class names) is a one-line DataError."""
        from fmnist.data import open_dataset

        split, contract = self.split(), self.contract()
        data = open_dataset(
            data_dir or self.data_dir(),
            val_fraction=split.val_fraction,
            seed=split.seed,
            image_size=(contract.height, contract.width),
        )
        found = data.contract
        if (found.shape, found.class_names) != (contract.shape, contract.class_names):
            raise DataError(
                f"{data.path}: holds {found.describe()} ({', '.join(found.class_names)}), "
                f"but {self.path} was trained on {contract.describe()}"
            )
        return data

    def load_data(self, data_dir: str | os.PathLike | None = None) -> FashionMNIST:
        """The run's own split and the test set, from `data_dir`, else the run's data
        directory, else the usual lookup (fmnist.dataset.resolve_data_dir)."""
        split = self.split()
        return load_splits(
            data_dir or self.data_dir(), val_fraction=split.val_fraction, seed=split.seed
        )

    def contract(self) -> InputContract:
        """input.json: what the model takes and answers (a run from before the contract
        existed was trained on Fashion-MNIST)."""
        path = self.path / CONTRACT_FILE
        if not path.is_file():
            return FASHION_MNIST
        return InputContract.from_dict(_read_json(path), where=str(path))

    def write_contract(self, contract: InputContract) -> None:
        _write_json(self.path / CONTRACT_FILE, contract.to_dict())

    def load_model(self) -> Any:
        """The Keras model, with a one-line error when it is missing or unreadable."""
        self._require_model()
        import keras

        try:
            return keras.models.load_model(self.model_path)
        except Exception as err:  # Keras raises many types for a corrupt archive
            raise UserError(f"{self.model_path}: cannot load the Keras model: {err}") from None

    def save_model(self, model: Any) -> None:
        model.save(self.model_path)

    def write_config(self, config: dict[str, Any]) -> None:
        _write_json(self.config_path, config)

    def write_run_info(self, info: dict[str, Any]) -> None:
        _write_json(self.run_path, info)

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        _write_json(self.metrics_path, metrics)

    def write_report(self, report: str) -> None:
        self.report_path.write_text(report)

    def _require_model(self) -> None:
        if not self.model_path.is_file():
            raise UserError(f"{self.path}: no {MODEL_FILE} (not a training run directory?)")


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"{path}: missing (not a training run directory?)")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:  # ValueError: bad JSON or not UTF-8
        raise UserError(f"{path}: unreadable: {err}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a JSON object")
    return data


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")
