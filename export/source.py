"""What a bundle is made from: a float Keras model, its input contract and labelled images.

Two origins give the same thing: a training run (RUN/model.keras, RUN/input.json and the
run's own data split) and a user's Keras model with a data directory (export/keras_model.py).
Export reads nothing else, so every later step is the same for both.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmnist.contract import InputContract
from fmnist.data import Dataset
from fmnist.run_dir import RunDir

BATCH = 1000  # test images in memory at once while export runs a model over them


@dataclass(frozen=True)
class TestSplit:
    """The reference and parity images, read from the dataset a batch at a time: a large
    test split is never all in memory (only its labels are)."""

    data: Dataset
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, size: int = BATCH) -> Iterator[np.ndarray]:
        """uint8 [n, H, W, C] in the split's fixed order (the reference outputs' order)."""
        for images, _ in self.data.batches("test", size):
            yield images

    def head(self, count: int) -> np.ndarray:
        """The first `count` images (warm-up requests, probes, the quantization report)."""
        return next(self.batches(min(count, len(self))))

    @classmethod
    def of(cls, data: Dataset) -> TestSplit:
        return cls(data, data.labels("test"))


@dataclass(frozen=True)
class ExportSource:
    model: Any  # keras.Model: contract.scale(pixels) [N, H, W, C] in, probabilities out
    contract: InputContract
    test: TestSplit  # uint8 images [N, H, W, C] and int64 labels: the reference and parity set
    calibration: np.ndarray  # uint8 training images for int8 calibration
    origin: dict[str, str] = field(default_factory=dict)  # the manifest's `source`

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.contract.class_names


def from_run(
    run_dir: str | os.PathLike, data_dir: Path | None, calibration_size: int, seed: int
) -> ExportSource:
    """RUN's model and contract with the run's own split: calibration images come from its
    training part, never from images it validated on."""
    run = RunDir(run_dir).check()
    model = run.load_model()
    data = run.open_data(data_dir)  # checked against the run's contract
    calibration = data.sample("train", calibration_size, seed)
    origin = {"kind": "run", "path": str(run.path.resolve())}
    return ExportSource(model, run.contract(), TestSplit.of(data), calibration, origin)
