"""TF Serving's base-path layout, `<base>/<model>/<int64 version>/`, as its file source reads it.

A version is a sub-directory whose whole name parses as a non-negative int64 (`00000123`
is version 123); anything else (a half-written `.tmp-...` directory, a stray file, a
number beyond int64 such as `99999999999999999999`) is ignored, which is what makes
rename-into-place publishing atomic and keeps every version representable in the APIs.
"""

from __future__ import annotations

import os
from pathlib import Path

INT64_MAX = 2**63 - 1


def parse_version(name: str) -> int | None:
    """The version a directory name stands for, or None if TF Serving would ignore it."""
    if not name.isascii() or not name.isdigit():
        return None
    digits = name.lstrip("0") or "0"
    if len(digits) > len(str(INT64_MAX)):  # also keeps int() away from huge digit strings
        return None
    version = int(digits)
    return version if version <= INT64_MAX else None


def scan_versions(model_dir: str | os.PathLike) -> dict[int, Path] | None:
    """Version number -> directory, or None when the base path itself does not exist.

    "Missing" and "exists but holds no versions" differ for a server: TF Serving keeps
    serving through the first (a transient outage) and unloads everything on the second.
    Other listing errors (e.g. permissions) raise OSError.
    """
    model_dir = Path(model_dir)
    versions: dict[int, Path] = {}
    try:
        entries = list(os.scandir(model_dir))
    except (FileNotFoundError, NotADirectoryError):
        return None
    for entry in entries:
        version = parse_version(entry.name)
        if version is not None and entry.is_dir():
            versions[version] = Path(entry.path)
    if not versions and not model_dir.is_dir():  # removed while we listed it
        return None
    return versions


def list_versions(model_dir: str | os.PathLike) -> dict[int, Path]:
    """Version number -> directory, for every int64-named sub-directory of a model's base path."""
    return scan_versions(model_dir) or {}


def latest_version(model_dir: str | os.PathLike) -> int | None:
    versions = list_versions(model_dir)
    return max(versions) if versions else None
