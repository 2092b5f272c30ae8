"""The pipeline's one typed config: where the data is, where everything goes, how thorough."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fmnist.contract import FASHION_MNIST_CLASSES
from fmnist.export.config import model_name_from
from fmnist.parity import Tolerance

if TYPE_CHECKING:
    from fmnist.data import Dataset


@dataclass(frozen=True)
class PipelineConfig:
    data_dir: Path | None
    out_dir: Path
    quick: bool = False
    train_config: Path | None = None  # TOML/JSON overriding TrainConfig fields
    model_name: str | None = None  # None: named after the data (model_name_for)
    tolerance: Tolerance = field(default_factory=Tolerance)
    flip_average: bool = False  # export every model with test-time flip averaging
    latency_runs: int = 200
    download: bool = False
    verbose: bool = True  # Keras' per-epoch log lines

    @property
    def run_dir(self) -> Path:
        return self.out_dir / "run"

    @property
    def base_path(self) -> Path:
        return self.out_dir / "models"

    @property
    def figures_dir(self) -> Path:
        return self.out_dir / "figures"


def model_name_for(data: Dataset) -> str:
    """fashion_mnist for Fashion-MNIST; any other dataset's model is named after its folder
    or file, as a TF Serving model name may be spelled."""
    if data.kind == "idx" and data.class_names == FASHION_MNIST_CLASSES:
        return "fashion_mnist"
    name = data.path.stem if data.path.is_file() else data.path.resolve().name
    return model_name_from(name)
