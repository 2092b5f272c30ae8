"""Atomic publishing of a version directory in TF Serving's base-path layout.

A version is built under a hidden, non-numeric name inside the model directory (TF
Serving's file-system source ignores it) and renamed to its number only when complete,
so a server never sees a half-written version and a failed export leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fmnist.errors import UserError
from fmnist.layout import INT64_MAX, list_versions

STAGING_PREFIX = ".tmp-export-"


def next_version(model_dir: Path) -> int:
    """One above the highest int64 version in `model_dir`, starting at 1.

    Names beyond int64 are not versions (TF Serving ignores them), so they never count."""
    versions = list_versions(model_dir)
    if not versions:
        return 1
    if max(versions) >= INT64_MAX:
        raise UserError(
            f"{model_dir}: version {max(versions)} is the largest int64; "
            "no next version exists (pass --version explicitly)"
        )
    return max(versions) + 1


def check_writable(base_path: Path) -> None:
    """Fail early, before any work, if the base path cannot take a new version."""
    existing = base_path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{base_path}: base path is not a directory ({existing} is a file)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{base_path}: base path is not writable ({existing})")


def remove_abandoned_staging(model_dir: Path) -> None:
    """Delete staging directories left by exports that were killed (their process is gone)."""
    if not model_dir.is_dir():
        return
    for entry in model_dir.glob(f"{STAGING_PREFIX}*-*"):
        pid = entry.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


@contextmanager
def staged_version(model_dir: Path, version: int) -> Iterator[Path]:
    """Yield an empty hidden staging directory; on success rename it to `model_dir/version`.

    On any failure (or interrupt) the staging directory is removed, and so are the model
    and base directories if this export created them and they are still empty.
    """
    if not 1 <= version <= INT64_MAX:
        raise UserError(f"--version must be between 1 and {INT64_MAX} (int64), got {version}")
    target = model_dir / str(version)
    if target.exists() or version in list_versions(model_dir):  # also "007" for version 7
        raise UserError(f"{target}: version {version} already exists; it is never overwritten")
    remove_abandoned_staging(model_dir)
    created = [d for d in (model_dir.parent, model_dir) if not d.exists()]
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{model_dir}: cannot create the model directory: {err.strerror}") from None
    staging = model_dir / f"{STAGING_PREFIX}{version}-{os.getpid()}"
    try:
        staging.mkdir()
        yield staging
        if target.exists():  # another export won the race
            raise UserError(f"{target}: version {version} appeared while exporting; not replaced")
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for directory in reversed(created):
            with contextlib.suppress(OSError):
                directory.rmdir()  # only if still empty
        raise
