"""The example datasets (tools/example_datasets.py), drawn once per session."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _examples():
    spec = importlib.util.spec_from_file_location(
        "example_datasets", REPO / "tools" / "example_datasets.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Colour PNGs, 32x32, 5 classes in train/ and test/ folders."""
    return _examples().write_shapes(tmp_path_factory.mktemp("shapes"))


@pytest.fixture(scope="session")
def digits_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-learn's 1,797 handwritten digits, 8x8 grayscale, as a Keras-style .npz."""
    return _examples().write_digits(tmp_path_factory.mktemp("digits") / "digits.npz")
