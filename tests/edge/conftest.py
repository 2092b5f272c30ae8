"""The bundle the edge tests run on: exported here, or by the main environment (TF-free runs)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

EDGE_BUNDLE_ENV = "FMNIST_EDGE_BUNDLE"


@pytest.fixture(scope="session")
def edge_bundle(request: pytest.FixtureRequest) -> Path:
    """A real exported bundle: $FMNIST_EDGE_BUNDLE if set (the TF-free CI environment runs
    against a bundle the TensorFlow environment exported), else the session's own export."""
    if os.environ.get(EDGE_BUNDLE_ENV):
        bundle = Path(os.environ[EDGE_BUNDLE_ENV])
        assert (bundle / "manifest.json").is_file(), f"{EDGE_BUNDLE_ENV}={bundle} is no bundle"
        return bundle
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        pytest.skip(f"no TensorFlow to export a bundle and {EDGE_BUNDLE_ENV} is not set")
    return request.getfixturevalue("exported_bundle")
