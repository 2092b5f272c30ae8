"""TF Serving's base-path layout, `<base>/<model>/<int version>/`, as its file source reads it.

A version is a sub-directory whose whole name parses as a non-negative integer
(`00000123` is version 123); anything else (a half-written `.tmp-...` directory, a
stray file) is ignored, which is what makes rename-into-place publishing atomic.
"""

from __future__ import annotations

import os
from pathlib import Path


def parse_version(name: str) -> int | None:
    """The version a directory name stands for, or None if TF Serving would ignore it."""
    if not name.isascii() or not name.isdigit():
        return None
    return int(name)


def list_versions(model_dir: str | os.PathLike) -> dict[int, Path]:
    """Version number -> directory, for every integer-named sub-directory of a model's base path."""
    model_dir = Path(model_dir)
    versions: dict[int, Path] = {}
    if not model_dir.is_dir():
        return versions
    for entry in model_dir.iterdir():
        version = parse_version(entry.name)
        if version is not None and entry.is_dir():
            versions[version] = entry
    return versions


def latest_version(model_dir: str | os.PathLike) -> int | None:
    versions = list_versions(model_dir)
    return max(versions) if versions else None
