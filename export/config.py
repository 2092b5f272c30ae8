"""The one typed config of the export stage, with defaults that work."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from fmnist.errors import UserError
from fmnist.parity import Tolerance

DEFAULT_MODEL_NAME = "fashion_mnist"
# Evens out ReLU-output channel ranges before int8 calibration (export/equalize.py); 0 = off.
DEFAULT_EQUALIZE_ALPHA = 0.5
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_LABEL = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class Int8Options:
    """How the float model becomes the int8 one (export/tflite.py). docs/accuracy.md has
    what each default measured against its alternatives."""

    equalize_alpha: float = DEFAULT_EQUALIZE_ALPHA  # ReLU-output equalization, 0 = off
    # Biases absorb the mean shift that rounding the weights to int8 causes
    # (export/bias_correction.py): it matters most for the first convolution on raw pixels.
    bias_correction: bool = True
    per_channel: bool = True  # one weight scale per output channel; False: one per tensor
    # Test-time flip averaging (export/flip_average.py). It wraps every model of the bundle,
    # not only the int8 one: ExportConfig reads it from here for all of them.
    flip_average: bool = False
    # How calibration pins the input range to 0-255: "images" adds an all-0 and an all-255
    # image (the default CNN's figures were measured so); "pixels" sets one pixel of a real
    # image to 0 and one to 255, for models whose later activations an all-white image
    # would stretch far beyond real ones (every later int8 range widens with them).
    input_pins: str = "images"

    def __post_init__(self) -> None:
        if self.input_pins not in ("images", "pixels"):
            raise UserError(f"input_pins must be 'images' or 'pixels', got {self.input_pins!r}")
        if not 0.0 <= self.equalize_alpha <= 1.0:
            raise UserError(f"--equalize-alpha must be between 0 and 1, got {self.equalize_alpha}")


@dataclass(frozen=True)
class ExportConfig:
    """Where a run is published and how its TFLite models are made and judged."""

    base_path: Path
    name: str = DEFAULT_MODEL_NAME
    version: int | None = None  # None: one above the highest existing version, from 1
    label: str | None = None  # version label recorded in models.config, e.g. "stable"
    data_dir: Path | None = None  # None: the run's data directory, then the usual lookup
    calibration_size: int = 500  # representative training images for int8 calibration
    int8: Int8Options = field(default_factory=Int8Options)
    tolerance: Tolerance = field(default_factory=Tolerance)
    num_versions: int = 2  # models.config policy: serve the latest N versions
    serving_base_path: str | None = None  # where base_path is mounted for the server
    warmup_batch_sizes: tuple[int, ...] = (1, 8, 64)
    # --warmup-from: logged requests (export/warmup_from_logs.py) replace the synthetic ones.
    warmup_from: tuple[Path, ...] = ()
    warmup_count: int = 100
    debug_quantization: bool = False  # always write the per-layer report, not only on failure
    # A model with ops int8 cannot run: publish the SavedModel and float32 TFLite only.
    skip_int8: bool = False
    seed: int = 42

    def __post_init__(self) -> None:
        check_model_name(self.name)
        if self.version is not None and self.version < 1:
            raise UserError(f"--version must be a positive integer, got {self.version}")
        if self.label is not None and not _LABEL.match(self.label):
            raise UserError(
                f"--label {self.label!r}: TF Serving labels start with a letter and use "
                "letters, digits, '_' or '-'"
            )
        if self.calibration_size < 1:
            raise UserError(f"--calibration-size must be >= 1, got {self.calibration_size}")
        if self.num_versions < 1:
            raise UserError(f"--num-versions must be >= 1, got {self.num_versions}")
        if not 1 <= self.warmup_count <= 1000:  # TF Serving refuses more warm-up records
            raise UserError(f"--warmup-count must be 1-1000, got {self.warmup_count}")

    @property
    def model_dir(self) -> Path:
        return self.base_path / self.name


def check_model_name(name: str) -> None:
    """A one-line error unless `name` can be a directory and a TF Serving model name."""
    if not _NAME.match(name):
        raise UserError(
            f"--name {name!r}: use letters, digits, '_', '.' or '-' (it becomes a "
            "directory and a TF Serving model name)"
        )


def model_name_from(text: str) -> str:
    """A file or folder name made into a valid model name (other characters become '_')."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text).lstrip("_.-") or "model"
