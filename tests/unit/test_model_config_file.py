"""models.config as a file several writers share: one writer at a time (a second waits,
then fails naming the holder), and a replacement is whole or not at all."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from fmnist.errors import UserError
from fmnist.export.model_config import update_models_config
from fmnist.serving.wire.messages import ModelServerConfig
from fmnist.serving.wire.model_config_file import locked, read_config, write_config

CONFIG = """model_config_list {
  config {
    name: "fashion_mnist"
    base_path: "/models/fashion_mnist"
    model_platform: "tensorflow"
    version_labels { key: "stable" value: 1 }
  }
}
"""


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "models.config"
    path.write_text(CONFIG)
    return path


def test_a_second_writer_fails_naming_the_holder(config_path: Path) -> None:
    with (
        locked(config_path),
        pytest.raises(UserError) as raised,
        locked(config_path, timeout=0.1),
    ):
        pass
    message = str(raised.value)
    assert f"another writer (pid {os.getpid()})" in message
    assert "nothing was changed" in message and "\n" not in message


def test_a_second_writer_waits_for_the_first(config_path: Path) -> None:
    holding, release = threading.Event(), threading.Event()
    order: list[str] = []

    def first() -> None:
        with locked(config_path):
            holding.set()
            release.wait(30)
            order.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    assert holding.wait(30)
    release.set()
    with locked(config_path, timeout=30):
        order.append("second in")
    thread.join(30)
    assert order == ["first done", "second in"]


def test_the_lock_is_released_when_the_holder_fails(config_path: Path) -> None:
    with pytest.raises(RuntimeError), locked(config_path):
        raise RuntimeError("a writer that crashed")
    with locked(config_path, timeout=0):
        pass


def test_write_replaces_the_file_whole_and_leaves_nothing_behind(config_path: Path) -> None:
    config = read_config(config_path)
    config.model_config_list.config[0].version_labels["stable"] = 2
    write_config(config_path, config)
    assert read_config(config_path).model_config_list.config[0].version_labels["stable"] == 2
    assert sorted(p.name for p in config_path.parent.iterdir()) == ["models.config"]


def test_a_missing_config_reads_empty(tmp_path: Path) -> None:
    assert read_config(tmp_path / "models.config") == ModelServerConfig()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model_config_list { config { nme: 'x' } }", "not a valid TF Serving model config"),
        ("custom_model_config { }", "has a custom_model_config"),
        ("\xff\xfe", "not a valid TF Serving model config"),
    ],
    ids=["unknown field", "custom config", "not text"],
)
def test_bad_configs_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "models.config"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(UserError, match=message) as raised:
        read_config(path)
    assert "\n" not in str(raised.value)


def test_export_waits_for_the_lock_too(tmp_path: Path) -> None:
    (tmp_path / "fashion_mnist" / "1").mkdir(parents=True)
    path = tmp_path / "models.config"
    with locked(path), pytest.raises(UserError, match="another writer"):
        update_models_config(tmp_path, "fashion_mnist", version=1, lock_timeout=0.1)
    update_models_config(tmp_path, "fashion_mnist", version=1, label="stable")
    assert read_config(path).model_config_list.config[0].version_labels["stable"] == 1
