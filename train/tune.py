"""A small hyper-parameter search with Optuna: learning rate, batch size and width.

Each trial trains a short run on a stratified subset and is scored on the validation
split (never the test set); weak trials are pruned early by epoch-wise reports.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import optuna

from fmnist.data import Dataset
from fmnist.train.config import TrainConfig
from fmnist.train.train import train


@dataclass(frozen=True)
class TuneConfig:
    trials: int = 12
    epochs: int = 6
    train_subset: int = 20000
    learning_rates: tuple[float, float] = (3e-4, 5e-3)  # log-uniform range
    batch_sizes: tuple[int, ...] = (64, 128, 256)
    widths: tuple[int, ...] = (16, 24, 32)
    seed: int = 42

    @classmethod
    def quick(cls) -> TuneConfig:
        return cls(trials=3, epochs=1, train_subset=3000, batch_sizes=(64, 128), widths=(8, 16))

    def replace(self, **changes: Any) -> TuneConfig:
        return dataclasses.replace(self, **changes)


@dataclass
class TuneResult:
    rows: list[dict[str, Any]]
    best_params: dict[str, Any]
    best_value: float
    best_config_path: Path
    table: str


class _PruningCallback(keras.callbacks.Callback):
    """Reports validation accuracy to Optuna after each epoch and stops hopeless trials."""

    def __init__(self, trial: optuna.Trial) -> None:
        super().__init__()
        self.trial = trial

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.trial.report(float((logs or {})["val_accuracy"]), step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch + 1}")


def tune(
    base: TrainConfig, settings: TuneConfig, data: Dataset, out_dir: str | os.PathLike
) -> TuneResult:
    """Run the search; write results.json, results.csv and best_config.json into `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=settings.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
    )

    def objective(trial: optuna.Trial) -> float:
        config = base.replace(
            learning_rate=trial.suggest_float("learning_rate", *settings.learning_rates, log=True),
            batch_size=trial.suggest_categorical("batch_size", list(settings.batch_sizes)),
            width=trial.suggest_categorical("width", list(settings.widths)),
            epochs=settings.epochs,
            warmup_epochs=min(base.warmup_epochs, settings.epochs - 1),
            train_subset=settings.train_subset,
            ema_momentum=0.0,  # a short trial has too few steps for the weight average
        )
        start = time.perf_counter()
        result = train(
            config,
            data,
            out_dir / f"trial_{trial.number:03d}",
            verbose=0,
            callbacks=[_PruningCallback(trial)],
        )
        trial.set_user_attr("seconds", time.perf_counter() - start)
        trial.set_user_attr("epochs", result.epochs_run)
        return max(result.history["val_accuracy"])

    study.optimize(objective, n_trials=settings.trials)

    rows = [
        {
            "trial": t.number,
            **t.params,
            "val_accuracy": t.value,
            "state": t.state.name.lower(),
            "seconds": t.user_attrs.get("seconds"),
        }
        for t in study.trials
    ]
    best_config = base.replace(**study.best_params)
    best_path = out_dir / "best_config.json"
    best_path.write_text(json.dumps(best_config.to_dict(), indent=2) + "\n")
    (out_dir / "results.json").write_text(
        json.dumps(
            {
                "best_params": study.best_params,
                "best_value": study.best_value,
                "settings": dataclasses.asdict(settings),
                "trials": rows,
            },
            indent=2,
        )
        + "\n"
    )
    with open(out_dir / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return TuneResult(
        rows, study.best_params, float(study.best_value), best_path, format_table(rows)
    )


def format_table(rows: list[dict[str, Any]]) -> str:
    header = f"{'trial':>5} {'learning_rate':>13} {'batch':>5} {'width':>5} {'val_acc':>8} state"
    lines = [header, "-" * len(header)]
    for row in rows:
        value = "-" if row["val_accuracy"] is None else f"{row['val_accuracy']:.4f}"
        lines.append(
            f"{row['trial']:>5} {row.get('learning_rate', float('nan')):>13.2e} "
            f"{row.get('batch_size', '-'):>5} {row.get('width', '-'):>5} {value:>8} {row['state']}"
        )
    return "\n".join(lines)
