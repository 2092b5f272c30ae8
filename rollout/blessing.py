"""`BASE/NAME/VERSION/blessing.json`: the verdict of the last comparison of a version with
its baseline, and the label moves that made it serve.

It lives in the version directory, beside the manifest, but outside the bundle's checksums
(`fmnist.manifest.UNCHECKSUMMED`): it is written after the bundle was published and
describes it rather than being part of it, so rewriting it never makes `fmnist-edge` or
`fmnist parity` see a damaged bundle. Its own soundness comes from `manifest_sha256`: a
blessing vouches for the manifest it was judged with, and through the manifest's
checksums for every file of the bundle; if the bundle changes, the blessing no longer
applies.

    schema "fmnist-deploy/blessing", schema_version 1
    model_name, model_version, manifest_sha256 (null: a version without a manifest)
    blessed          bool: the comparison passed
    judged_at        ISO 8601 UTC, or null (only promoted, never judged)
    baseline         {version, manifest_sha256} or null (a first version)
    comparison       the comparison's JSON (checks, figures), or null
    promotions       [{label, from, to, at, forced, reason}], oldest first
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fmnist.atomic import replace_text
from fmnist.errors import UserError
from fmnist.manifest import BLESSING_NAME, parse_json

SCHEMA = "fmnist-deploy/blessing"
SCHEMA_VERSION = 1
MAX_BLESSING_BYTES = 8 << 20  # a comparison with a few thousand classes stays far below


class BlessingError(UserError):
    """A blessing.json that cannot be read or is not one."""


@dataclass(frozen=True)
class Blessing:
    path: Path
    data: dict[str, Any]

    @property
    def blessed(self) -> bool:
        return bool(self.data["blessed"])

    @property
    def judged(self) -> bool:
        return self.data.get("judged_at") is not None

    @property
    def manifest_sha256(self) -> str | None:
        return self.data.get("manifest_sha256")

    @property
    def baseline_version(self) -> int | None:
        baseline = self.data.get("baseline")
        return None if baseline is None else int(baseline["version"])

    @property
    def promotions(self) -> list[dict[str, Any]]:
        return list(self.data.get("promotions", []))

    def promoted_from(self, label: str) -> int | None:
        """The version `label` named before its last move to this version (None if none)."""
        moves = [p for p in self.promotions if p["label"] == label]
        return moves[-1]["from"] if moves else None


def read_blessing(version_dir: Path) -> Blessing | None:
    """The version's blessing, None if it has none; BlessingError if it is not readable."""
    path = version_dir / BLESSING_NAME
    if not path.exists():
        return None
    try:
        size = path.stat().st_size
        if size > MAX_BLESSING_BYTES:
            raise BlessingError(f"{path}: {size} bytes is too large for a blessing")
        data = parse_json(path.read_bytes())
    except OSError as err:
        raise BlessingError(f"{path}: unreadable: {err.strerror or err}") from None
    except ValueError as err:
        raise BlessingError(f"{path}: not valid JSON: {' '.join(str(err).split())}") from None
    problem = _problem(data)
    if problem:
        raise BlessingError(f"{path}: {problem} (rerun fmnist compare to judge it again)")
    return Blessing(path, data)


def _problem(data: Any) -> str | None:
    """What makes `data` not a blessing this version reads, or None."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        return "not an fmnist-deploy blessing"
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        return "schema_version must be an integer"
    if version > SCHEMA_VERSION:
        return f"schema version {version} is newer than this fmnist-deploy reads"
    if not isinstance(data.get("blessed"), bool):
        return "blessed must be true or false"
    if not isinstance(data.get("model_version"), int):
        return "model_version must be an integer"
    sha = data.get("manifest_sha256")
    if sha is not None and not (isinstance(sha, str) and len(sha) == 64):
        return "manifest_sha256 must be a SHA-256"
    baseline = data.get("baseline")
    if baseline is not None and not (
        isinstance(baseline, dict) and isinstance(baseline.get("version"), int)
    ):
        return "baseline must be null or {version, manifest_sha256}"
    promotions = data.get("promotions", [])
    if not isinstance(promotions, list) or not all(
        isinstance(p, dict)
        and isinstance(p.get("label"), str)
        and (p.get("from") is None or isinstance(p.get("from"), int))
        for p in promotions
    ):
        return "promotions must be a list of {label, from, to, at, forced}"
    return None


def record_comparison(
    version_dir: Path,
    *,
    model_name: str,
    model_version: int,
    manifest_sha256: str | None,
    blessed: bool,
    baseline: dict[str, Any] | None,
    comparison: dict[str, Any],
) -> Blessing:
    """Write the verdict of a comparison, keeping the version's promotion history."""
    previous = _readable(version_dir)
    data = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "model_name": model_name,
        "model_version": model_version,
        "manifest_sha256": manifest_sha256,
        "blessed": blessed,
        "judged_at": _now(),
        "baseline": baseline,
        "comparison": comparison,
        "promotions": previous.promotions if previous else [],
    }
    return _write(version_dir, data)


def record_promotion(
    version_dir: Path,
    *,
    model_name: str,
    model_version: int,
    manifest_sha256: str | None,
    label: str,
    from_version: int | None,
    forced: bool,
    reason: str,
) -> Blessing:
    """Add a label move to the version's history (a version promoted without any blessing,
    forced, gets a blessing that says it was never judged)."""
    previous = _readable(version_dir)
    data = (
        dict(previous.data)
        if previous
        else {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "model_name": model_name,
            "model_version": model_version,
            "manifest_sha256": manifest_sha256,
            "blessed": False,
            "judged_at": None,
            "baseline": None,
            "comparison": None,
        }
    )
    move = {"label": label, "from": from_version, "to": model_version, "at": _now()}
    data["promotions"] = [*data.get("promotions", []), move | {"forced": forced, "reason": reason}]
    return _write(version_dir, data)


def _readable(version_dir: Path) -> Blessing | None:
    """The current blessing, or None when absent or unreadable (it is being replaced)."""
    try:
        return read_blessing(version_dir)
    except BlessingError:
        return None


def _write(version_dir: Path, data: dict[str, Any]) -> Blessing:
    """Atomically: a reader sees the old blessing or the new one, never half of one."""
    path = version_dir / BLESSING_NAME
    replace_text(path, json.dumps(data, indent=2) + "\n")
    return Blessing(path, data)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
