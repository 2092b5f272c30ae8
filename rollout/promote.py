"""Move a version label in models.config to a blessed version, or back to the version it
named before, atomically and under the writers' lock; a running server follows through its
`--model_config_file_poll_wait_seconds` polling, TF Serving's and ours alike.

A move is allowed when it undoes the label's last move (a rollback: the version the label
leaves recorded where it came from), or when the target's blessing passed, was judged
against the version the label names now, and vouches for the bundle as it is (manifest
SHA-256). `--force` overrides that verdict and says so; it never makes a missing version
or a damaged bundle servable. The version the label leaves stays in the version policy:
requests that name the label meet a loaded version before, during and after the move, and
a rollback needs no load. A version the policy does not serve yet is added to it first, and
the label moves once the server has loaded it (see `promote`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmnist.dataset import sha256_file
from fmnist.errors import EXIT_PARITY_FAILED, EXIT_USAGE, UserError
from fmnist.layout import list_versions
from fmnist.manifest import MANIFEST_NAME, load_manifest
from fmnist.rollout.blessing import BlessingError, read_blessing, record_promotion
from fmnist.serving.client import ServingError
from fmnist.serving.wire.model_config_file import (
    CONFIG_NAME,
    DEFAULT_LOCK_TIMEOUT,
    locked,
    read_config,
    write_config,
)

_LABEL = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")  # TF Serving's version labels


class PromotionRefused(UserError):
    """The move is not allowed: 1 when the version failed its comparison, 2 when nothing
    vouches for it (no blessing, a stale one, another bundle)."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class PromotionPending(UserError):
    """The policy now serves the version, the label has not moved yet (exit 2)."""


@dataclass(frozen=True)
class Promotion:
    """What `promote` did."""

    model: str
    label: str
    version: int
    previous: int | None
    changed: bool
    allowed_by: str  # why the move was allowed ("" when it was forced)
    forced_over: str  # the refusal --force overrode ("" when none)
    config: Path
    policy: str
    policy_changed: bool

    @property
    def forced(self) -> bool:
        return bool(self.forced_over)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "config": str(self.config), "forced": self.forced}


def promote(
    base_path: Path,
    name: str,
    label: str,
    version: int,
    *,
    force: bool = False,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    wait_until_loaded: Callable[[set[int]], None] | None = None,
) -> Promotion:
    """Point `label` of model `name` in BASE/models.config at `version` (see the module).

    TF Serving labels only versions it has loaded, and checks the labels before it applies
    a new version policy: a config that both adds a version to the policy and labels it is
    refused at every poll. So when the policy does not serve `version` yet, it is added to
    the policy first and the label moves in a second write, once `wait_until_loaded` (which
    raises if the server does not load them in time) returns; without one, promote stops
    after the first write (PromotionPending: run it again once the server loaded it)."""
    if not _LABEL.match(label):
        raise UserError(
            f"--label {label!r}: TF Serving labels start with a letter and use letters, "
            "digits, '_' or '-'"
        )
    config_path = base_path / CONFIG_NAME
    if not config_path.is_file():
        raise UserError(f"{config_path}: no such file (fmnist export writes it)")
    with locked(config_path, lock_timeout):
        config = read_config(config_path)
        entry = next((m for m in config.model_config_list.config if m.name == name), None)
        if entry is None:
            raise UserError(f"{config_path}: no model {name!r} (fmnist export adds it)")
        model_dir = _model_dir(base_path, name, entry.base_path)
        on_disk = list_versions(model_dir)
        if version not in on_disk:
            have = ", ".join(map(str, sorted(on_disk))) or "none"
            raise UserError(
                f"{model_dir}: no version {version} to promote (versions: {have}); "
                "--force does not make a missing version servable"
            )
        previous = entry.version_labels.get(label)
        if previous == version:
            return Promotion(
                name,
                label,
                version,
                previous,
                False,
                "it already does",
                "",
                config_path,
                _describe(entry),
                False,
            )
        manifest_sha = _checked_manifest(on_disk[version])
        try:
            allowed_by = _allowed(label, version, previous, on_disk, manifest_sha)
            forced_over = ""
        except PromotionRefused as refusal:
            if not force:
                raise
            allowed_by, forced_over = "", str(refusal)
        needed = {version, *entry.version_labels.values()}
        if previous is not None and previous in on_disk:
            needed.add(previous)
        missing = needed - _served(entry, sorted(on_disk))
        policy_changed = bool(missing)
        if missing:
            _serve(entry, needed, sorted(on_disk))
            write_config(config_path, config)
            if wait_until_loaded is None:
                raise PromotionPending(
                    f"the version policy did not serve version {', '.join(map(str, missing))}: "
                    f"added it ({_describe(entry)}) so that the server loads it; {label} "
                    "moves once it is loaded (TF Serving labels only loaded versions): run "
                    "this again then, or give --grpc/--rest to wait for it"
                )
            wait_until_loaded(missing)
        entry.version_labels[label] = version
        write_config(config_path, config)
        record_promotion(
            on_disk[version],
            model_name=name,
            model_version=version,
            manifest_sha256=manifest_sha,
            label=label,
            from_version=previous,
            forced=bool(forced_over),
            reason=allowed_by or f"forced: {forced_over}",
        )
    return Promotion(
        name,
        label,
        version,
        previous,
        True,
        allowed_by,
        forced_over,
        config_path,
        _describe(entry),
        policy_changed,
    )


def _model_dir(base_path: Path, name: str, configured: str) -> Path:
    """The model's directory here: BASE/NAME, which export writes (a config written for a
    container names its mount, e.g. /models/NAME, not this path)."""
    local = base_path / name
    return local if local.is_dir() else Path(configured)


def _checked_manifest(version_dir: Path) -> str | None:
    """The manifest's SHA-256 after every bundle file checked against it (None: a version
    without a manifest); a damaged bundle is never promoted, --force or not."""
    if not (version_dir / MANIFEST_NAME).is_file():
        return None
    manifest = load_manifest(version_dir)
    manifest.verify()
    return sha256_file(manifest.path)


def _allowed(
    label: str,
    version: int,
    previous: int | None,
    on_disk: dict[int, Path],
    manifest_sha: str | None,
) -> str:
    """Why the move is allowed; PromotionRefused says why not."""
    if previous is not None and previous in on_disk:
        try:
            current = read_blessing(on_disk[previous])
        except BlessingError:
            current = None
        if current is not None and current.promoted_from(label) == version:
            return f"rollback: {label} named version {version} before version {previous}"
    what = f"version {version}"
    try:
        blessing = read_blessing(on_disk[version])
    except BlessingError as err:
        raise PromotionRefused(f"{what}: {err}") from None
    compare_hint = f"run fmnist compare BASE --name NAME --candidate {version} first"
    if blessing is None or not blessing.judged:
        raise PromotionRefused(f"{what} has no blessing: {compare_hint}")
    if blessing.manifest_sha256 != manifest_sha:
        raise PromotionRefused(
            f"{what} changed since it was judged (its manifest is not the one blessed): "
            f"{compare_hint}"
        )
    against = blessing.baseline_version
    if against != previous:
        judged = f"version {against}" if against is not None else "no baseline"
        now = f"version {previous}" if previous is not None else "no version"
        raise PromotionRefused(
            f"{what} was judged against {judged}, but {label} names {now} now: {compare_hint}"
        )
    judged = f"against version {against}" if against is not None else "alone (first version)"
    if not blessing.blessed:
        failures = (blessing.data.get("comparison") or {}).get("failures") or []
        detail = f": {failures[0]}" + (f" (+{len(failures) - 1} more)" if len(failures) > 1 else "")
        raise PromotionRefused(
            f"{what} failed its comparison {judged}{detail if failures else ''}", EXIT_PARITY_FAILED
        )
    return f"blessed {blessing.data['judged_at']}, compared {judged}"


def _served(entry: Any, on_disk: list[int]) -> set[int]:
    """The versions the model's version policy serves now."""
    policy = entry.model_version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return set(on_disk)
    if choice == "specific":
        return set(policy.specific.versions)
    count = policy.latest.num_versions if choice == "latest" else 1  # TF Serving's default
    return set(on_disk[-max(count, 1) :])


def _serve(entry: Any, needed: set[int], on_disk: list[int]) -> None:
    """A `specific` policy serving what the policy serves now and `needed`."""
    served = _served(entry, on_disk)
    entry.model_version_policy.Clear()
    entry.model_version_policy.specific.versions.extend(sorted(served | needed))


def _describe(entry: Any) -> str:
    policy = entry.model_version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "specific":
        return "specific " + ", ".join(map(str, policy.specific.versions))
    if choice == "all":
        return "all"
    return f"latest {policy.latest.num_versions if choice == 'latest' else 1}"


def wait_until_loaded(client: Any, versions: set[int], timeout: float, label: str) -> None:
    """Until the server at `client` reports every version in `versions` AVAILABLE; a
    UserError after `timeout` seconds (the label has not moved then)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            states = {s["version"]: s["state"] for s in client.status()}
        except ServingError as err:
            if err.code not in ("NOT_FOUND", "UNAVAILABLE"):
                raise
            states = {}
        if all(states.get(v) == "AVAILABLE" for v in versions):
            return
        if time.monotonic() > deadline:
            listed = ", ".join(map(str, sorted(versions)))
            raise UserError(
                f"the server did not load version {listed} within {timeout:g} s (states: "
                f"{states}); models.config serves it, {label} has not moved"
            )
        time.sleep(0.2)


def wait_for_label(client: Any, label: str, version: int, timeout: float) -> float | None:
    """Seconds until the server answers `label` from `version` (its metadata says so);
    None if it does not within `timeout`."""
    start = time.monotonic()
    while True:
        try:
            spec = client.metadata(label=label).get("model_spec", {})
            if str(spec.get("version")) == str(version):
                return time.monotonic() - start
        except ServingError as err:
            if err.code not in ("INVALID_ARGUMENT", "NOT_FOUND", "UNAVAILABLE"):
                raise
        if time.monotonic() - start > timeout:
            return None
        time.sleep(0.1)
