"""What a TFLite image classifier's tensors say: the image it takes, the scores it answers,
and how its quantization maps pixels in and probabilities out. Read from the interpreter's
tensor details, never assumed; anything else is a one-line ModelError. TF-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmnist.errors import UserError

INPUT_DTYPES = (np.uint8, np.int8, np.float32)
SCORE_DTYPES = (np.float32, np.int8, np.uint8)


class ModelError(UserError):
    """A model file that is missing, truncated, not TFLite, fails its checksum, or is not
    an image classifier."""


@dataclass(frozen=True)
class Quantization:
    """real = (q - zero_point) * scale; scale 0 means the tensor is not quantized."""

    dtype: np.dtype
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0

    @classmethod
    def of(cls, details: dict[str, Any]) -> Quantization:
        return cls(np.dtype(details["dtype"]), *details["quantization"])


def _shape(details: dict[str, Any]) -> list[int]:
    return [int(d) for d in details["shape"]]


def image_shape(path: Path, details: dict[str, Any]) -> tuple[int, int, int]:
    """(H, W, C) of an image input [1, H, W, C] (C 1 or 3) or [1, H, W]; else a ModelError."""
    shape, dtype = _shape(details), np.dtype(details["dtype"])
    is_image = (len(shape) == 4 and shape[3] in (1, 3)) or len(shape) == 3
    quantized = details["quantization"][0] != 0.0
    unusable = dtype not in INPUT_DTYPES or (dtype == np.int8 and not quantized)
    if not is_image or min(shape[1:3]) < 1 or unusable:
        raise ModelError(
            f"{path}: input {shape} {dtype} is not an image (expected [1, H, W, C] with C 1 "
            "or 3, of uint8, quantized int8 or float32)"
        )
    return (shape[1], shape[2], shape[3] if len(shape) == 4 else 1)


def _is_scores(details: dict[str, Any]) -> bool:
    shape = _shape(details)
    return len(shape) == 2 and shape[1] >= 2 and np.dtype(details["dtype"]) in SCORE_DTYPES


def _is_class_ids(details: dict[str, Any]) -> bool:
    return len(_shape(details)) == 1 and np.dtype(details["dtype"]).kind in "iu"


def score_output(path: Path, outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """The output holding one score per class [1, C]: the only output, or, of two, the one
    beside the class ids [1] (the SavedModel's probabilities and class_ids)."""
    scores = [d for d in outputs if _is_scores(d)]
    others = [d for d in outputs if not _is_scores(d)]
    if len(outputs) in (1, 2) and len(scores) == 1 and all(_is_class_ids(d) for d in others):
        return scores[0]
    found = ", ".join(f"{_shape(d)} {np.dtype(d['dtype'])}" for d in outputs)
    raise ModelError(
        f"{path}: outputs {found or 'none'} are not class scores (expected one [1, C] output "
        "of float32, int8 or uint8, C >= 2, and optionally class ids [1])"
    )


def guess_scaling(quant: Quantization) -> str:
    """The scaling a bare model's quantized input was calibrated for: the contract scaling
    whose pixel range its representable range matches best ("unit" for float inputs)."""
    if not quant.quantized:  # float: the usual [0, 1]; plain uint8: the model's own
        return "model" if quant.dtype == np.uint8 else "unit"
    info = np.iinfo(quant.dtype)
    low = (info.min - quant.zero_point) * quant.scale
    high = (info.max - quant.zero_point) * quant.scale
    ranges = {"unit": (0.0, 1.0), "symmetric": (-1.0, 1.0), "raw": (0.0, 255.0)}
    return min(ranges, key=lambda k: abs(ranges[k][0] - low) + abs(ranges[k][1] - high))


def read_class_names(path: str | Path) -> tuple[str, ...]:
    """Class names from a text file, one a line (blank lines ignored)."""
    path = Path(path)
    try:
        names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read class names: {err}") from None
    if not names:
        raise UserError(f"{path}: holds no class names")
    if len(set(names)) != len(names):
        raise UserError(f"{path}: class names repeat")
    return names
