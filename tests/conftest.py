"""Shared fixtures: the real Fashion-MNIST from ../shared, and small real models built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fmnist.dataset import DATA_DIR_ENV, OFFICIAL_FILES

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures" / "tf-serving-testdata"

# Keep TF quiet and single-process friendly in tests.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _find_data_dir() -> Path | None:
    for candidate in (os.environ.get(DATA_DIR_ENV), SHARED / "data" / "fashion-mnist"):
        if candidate and all((Path(candidate) / f.name).is_file() for f in OFFICIAL_FILES):
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real Fashion-MNIST files; tests that need them skip (with the reason) when absent."""
    found = _find_data_dir()
    if found is None:
        pytest.skip(f"Fashion-MNIST not found: set {DATA_DIR_ENV} or place it in {SHARED}/data")
    return found


@pytest.fixture(scope="session")
def serving_fixtures() -> Path:
    """TF Serving's own test models and configs (foreign models, for compatibility tests)."""
    if not FIXTURES.is_dir():
        pytest.skip(f"TF Serving test data not found at {FIXTURES}")
    return FIXTURES
