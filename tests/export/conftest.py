"""Keras models of shapes the training config does not build, and small real datasets
(tools/example_datasets.py), for export's edge cases and users' own models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def _small_cnn(*, residual: bool = False, relu_max: float | None = None, width: int = 8):
    """conv-BN-ReLU, conv-BN, (+ the first ReLU's output), ReLU, pool, a softmax layer."""
    import keras

    keras.utils.set_random_seed(0)
    layers = keras.layers
    inputs = keras.Input((28, 28, 1), name="image")
    first = layers.ReLU(relu_max)(layers.BatchNormalization()(layers.Conv2D(width, 3)(inputs)))
    x = layers.BatchNormalization()(layers.Conv2D(width, 3, padding="same")(first))
    if residual:
        x = layers.Add()([x, first])
    x = layers.MaxPooling2D()(layers.ReLU(relu_max)(x))
    x = layers.Dense(16)(layers.Flatten()(x))
    outputs = layers.Dense(10, activation="softmax")(layers.ReLU(relu_max)(x))
    return keras.Model(inputs, outputs)


@pytest.fixture
def residual_model():
    """A CNN whose second convolution's output is added to the first one's (an int8 ADD)."""
    return _small_cnn(residual=True)


@pytest.fixture
def bounded_relu_model():
    """A CNN whose ReLUs stop at 6 (ReLU6)."""
    return _small_cnn(relu_max=6.0)


REPO = Path(__file__).resolve().parents[2]


def _example_data(kind: str, out: Path, *flags: str) -> Path:
    """tools/example_datasets.py, run as a user would."""
    tool = REPO / "tools" / "example_datasets.py"
    done = subprocess.run(
        [sys.executable, str(tool), kind, str(out), *flags], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="session")
def digits_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-learn's load_digits as an .npz: 8x8x1, 10 classes, ~36 test images a class."""
    return _example_data("digits", tmp_path_factory.mktemp("digits") / "digits.npz")


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Colour shapes as a folder per class: 32x32x3, 5 classes, 150 train and 30 test each."""
    out = tmp_path_factory.mktemp("shapes") / "shapes"
    return _example_data("shapes", out, "--per-class", "150")
