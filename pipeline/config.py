"""The pipeline's one typed config: where the data is, where everything goes, how thorough."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fmnist.parity import Tolerance


@dataclass(frozen=True)
class PipelineConfig:
    data_dir: Path | None
    out_dir: Path
    quick: bool = False
    train_config: Path | None = None  # TOML/JSON overriding TrainConfig fields
    model_name: str = "fashion_mnist"
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
