"""`B/models.config`: TF Serving's text-format ModelServerConfig, kept in step with exports.

Read and written as TF Serving's own ModelServerConfig message (the project's declaration
of it, `serving/wire`), so a file TF Serving rejects is never produced; other models in
the file are left as they are.
"""

from __future__ import annotations

import os
from pathlib import Path

from google.protobuf import text_format

from fmnist.errors import UserError
from fmnist.layout import list_versions
from fmnist.serving.wire.messages import ModelServerConfig

CONFIG_NAME = "models.config"


def read_config(path: Path) -> ModelServerConfig:
    """Parse a models.config (an empty config if the file does not exist)."""
    config = ModelServerConfig()
    if path.is_file():
        try:
            text_format.Parse(path.read_text(), config)
        except (text_format.ParseError, UnicodeDecodeError) as err:
            raise UserError(f"{path}: not a valid TF Serving model config: {err}") from None
    if config.WhichOneof("config") == "custom_model_config":
        raise UserError(f"{path}: has a custom_model_config; export only manages model lists")
    return config


def update_models_config(
    base_path: Path,
    name: str,
    *,
    version: int,
    label: str | None = None,
    num_versions: int = 2,
    serving_base_path: str | None = None,
) -> Path:
    """Add or update model `name` in `base_path/models.config` after `version` landed; `label`
    (e.g. "stable") then names that version.

    The policy serves the latest `num_versions` versions; a labelled version that falls
    outside that window is kept loaded (TF Serving refuses labels on unloaded versions)
    by switching to a `specific` policy listing exactly the versions to serve.
    """
    path = base_path / CONFIG_NAME
    config = read_config(path)
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
    tmp = path.with_name(CONFIG_NAME + ".tmp")
    tmp.write_text(text_format.MessageToString(config))
    os.replace(tmp, path)
    return path
