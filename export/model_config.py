"""`B/models.config`: TF Serving's text-format ModelServerConfig, kept in step with exports.

Read and written as TF Serving's own ModelServerConfig message (the project's declaration
of it, `serving/wire`), so a file TF Serving rejects is never produced; other models in
the file are left as they are. Written under the writers' lock, atomically
(`serving/wire/model_config_file.py`): `fmnist promote` edits the same file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fmnist.layout import list_versions
from fmnist.serving.wire.model_config_file import (
    CONFIG_NAME,
    DEFAULT_LOCK_TIMEOUT,
    locked,
    read_config,
    write_config,
)

__all__ = ["CONFIG_NAME", "read_config", "update_models_config"]


def update_models_config(
    base_path: Path,
    name: str,
    *,
    version: int,
    label: str | None = None,
    num_versions: int = 2,
    serving_base_path: str | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> Path:
    """Add or update model `name` in `base_path/models.config` after `version` landed; `label`
    (e.g. "stable") then names that version.

    The policy serves the latest `num_versions` versions; a labelled version that falls
    outside that window is kept loaded (TF Serving refuses labels on unloaded versions)
    by switching to a `specific` policy listing exactly the versions to serve.
    """
    path = base_path / CONFIG_NAME
    with locked(path, lock_timeout):  # `fmnist promote` may be moving a label in this file
        config = read_config(path)
        _update(config, base_path, name, version, label, num_versions, serving_base_path)
        write_config(path, config)
    return path


def _update(
    config: Any,
    base_path: Path,
    name: str,
    version: int,
    label: str | None,
    num_versions: int,
    serving_base_path: str | None,
) -> None:
    models = config.model_config_list.config
    entry = next((m for m in models if m.name == name), None)
    if entry is None:
        entry = models.add(name=name, model_platform="tensorflow")
    root = serving_base_path.rstrip("/") if serving_base_path else str(base_path.resolve())
    entry.base_path = f"{root}/{name}"
    versions = sorted(list_versions(base_path / name))
    if label:
        entry.version_labels[label] = version
    for stale in [k for k, v in entry.version_labels.items() if v not in versions]:
        del entry.version_labels[stale]
    latest = versions[-num_versions:]
    labelled = set(entry.version_labels.values())
    policy = entry.model_version_policy
    policy.Clear()
    if labelled <= set(latest):
        policy.latest.num_versions = num_versions
    else:
        policy.specific.versions.extend(sorted(labelled | set(latest)))
