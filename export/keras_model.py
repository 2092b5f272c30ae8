"""A classifier trained anywhere, as an export source (`fmnist export --keras-model`).

The model says the image size and channels, the data directory the class names and the
test and calibration images, the user the pixel scaling. Everything that would make a
wrong bundle is refused first, in one line: an input that is not one image
[None, H, W, C] (C 1 or 3), several inputs or outputs, an output that is not one score
per class of the data, scores that are not probabilities (logits: `--softmax` applies it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from fmnist.contract import CHANNELS, InputContract
from fmnist.errors import UserError
from fmnist.export.source import ExportSource, TestSplit

# Rows of a probability output sum to 1 up to float32 rounding of a softmax.
SUM_TOLERANCE = 1e-3
PROBE_IMAGES = 64


def load_keras_model(path: Path) -> Any:
    """The Keras model at `path`, with a one-line error when it cannot be loaded."""
    if not path.is_file():
        raise UserError(f"{path}: no such Keras model file")
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as err:  # Keras raises many types for a bad or foreign file
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise UserError(f"{path}: cannot load the Keras model: {first}") from None


def image_input(model: Any, path: Path) -> tuple[int | None, int | None, int]:
    """(H, W, C) of the model's one image input; H, W None when the model takes any size."""
    if len(model.inputs) != 1:
        raise UserError(
            f"{path}: the model has {len(model.inputs)} inputs; export takes a classifier "
            "of one image input"
        )
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[3] not in CHANNELS:
        raise UserError(
            f"{path}: input {_shape(shape)} is not an image [None, H, W, C] with C 1 or 3"
        )
    return shape[1], shape[2], shape[3]


def check_output(model: Any, path: Path, num_classes: int) -> None:
    """One output of one score per class of the data."""
    if len(model.outputs) != 1:
        raise UserError(
            f"{path}: the model has {len(model.outputs)} outputs; export takes one output "
            "of class scores"
        )
    shape = tuple(model.outputs[0].shape)
    if len(shape) != 2:
        raise UserError(f"{path}: output {_shape(shape)} is not class scores [None, classes]")
    if shape[1] != num_classes:
        raise UserError(
            f"{path}: the output gives {shape[1]} scores per image, but the data has "
            f"{num_classes} classes"
        )


def probability_model(model: Any, pixels: np.ndarray, softmax: bool, path: Path) -> Any:
    """`model` if it answers probabilities; with `softmax`, the model with a softmax on its
    logits. Judged on real `pixels` (the contract's scaling of data images)."""
    scores = np.asarray(model.predict(pixels, verbose=0), dtype=np.float64)
    sums = scores.sum(axis=1)
    probabilities = (
        scores.min() >= -1e-6
        and scores.max() <= 1 + 1e-6
        and np.abs(sums - 1).max() <= SUM_TOLERANCE
    )
    if probabilities and softmax:
        raise UserError(
            f"{path}: --softmax, but the output already is a probability (rows sum to 1); "
            "a second softmax would flatten it"
        )
    if probabilities:
        return model
    if not softmax:
        raise UserError(
            f"{path}: the output is not a probability (values {scores.min():.3g} to "
            f"{scores.max():.3g}, rows sum to {sums.min():.3g}-{sums.max():.3g}): logits? "
            "--softmax applies softmax to them"
        )
    import keras

    answer = keras.layers.Softmax(name="export_softmax")(model.outputs[0])
    return keras.Model(model.inputs, answer, name=f"{model.name}_softmax")


def from_keras_model(
    path: str | os.PathLike,
    data_dir: Path,
    scaling: str,
    *,
    softmax: bool,
    calibration_size: int,
    seed: int,
) -> ExportSource:
    """The user's model at `path` with the data at `data_dir`, checked as above."""
    from fmnist.data import open_dataset

    path = Path(path)
    model = load_keras_model(path)
    height, width, channels = image_input(model, path)
    size = (height, width) if height and width else None
    dataset = open_dataset(data_dir, image_size=size, seed=seed)
    contract = dataset.contract.with_scaling(scaling)
    _check_images(contract, (height, width, channels), path)
    check_output(model, path, contract.num_classes)
    test = TestSplit.of(dataset)
    calibration = dataset.sample("train", calibration_size, seed)
    probe = contract.scale(test.head(PROBE_IMAGES))
    model = probability_model(model, probe, softmax, path)
    origin = {"kind": "keras_model", "path": str(path.resolve()), "data": str(dataset.path)}
    return ExportSource(model, contract, test, calibration, origin)


def _check_images(contract: InputContract, model_shape: tuple, path: Path) -> None:
    height, width, channels = model_shape
    size_differs = height and width and contract.shape[:2] != (height, width)
    if channels != contract.channels or size_differs:
        raise UserError(
            f"{path}: the model takes {_shape((None, *model_shape))} images, the data has "
            f"{contract.height}x{contract.width}x{contract.channels}"
        )


def _shape(shape: tuple) -> str:
    return "[" + ", ".join("None" if d is None else str(d) for d in shape) + "]"
