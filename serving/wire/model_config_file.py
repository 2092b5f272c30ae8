"""`models.config` as a file several writers share: TF Serving's text-format
ModelServerConfig, read, written atomically, and locked against concurrent writers.

`fmnist export` adds versions to it and `fmnist promote` moves labels in it, while a server
re-reads it (`--model_config_file_poll_wait_seconds`). So a writer holds an exclusive
`fcntl` lock on `models.config.lock` beside it for its whole read-modify-write (a second
writer waits, then fails naming the holder), and replaces the file by renaming a complete,
fsynced copy over it: a reader sees the old config or the new one, never a part of one.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from google.protobuf import text_format

from fmnist.atomic import replace_text
from fmnist.errors import UserError
from fmnist.serving.wire.messages import ModelServerConfig

CONFIG_NAME = "models.config"
LOCK_SUFFIX = ".lock"
DEFAULT_LOCK_TIMEOUT = 30.0


def read_config(path: Path) -> Any:
    """Parse a models.config (an empty config if the file does not exist)."""
    config = ModelServerConfig()
    if path.is_file():
        try:
            text_format.Parse(path.read_text(), config)
        except (text_format.ParseError, UnicodeDecodeError) as err:
            raise UserError(f"{path}: not a valid TF Serving model config: {err}") from None
    if config.WhichOneof("config") == "custom_model_config":
        raise UserError(f"{path}: has a custom_model_config; only model lists are managed")
    return config


def write_config(path: Path, config: Any) -> None:
    """Replace `path` with `config`, atomically and durably."""
    text = text_format.MessageToString(config)
    text_format.Parse(text, ModelServerConfig())  # what TF Serving will parse, checked first
    replace_text(path, text)


@contextlib.contextmanager
def locked(path: Path, timeout: float = DEFAULT_LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the writers' lock of the config at `path` (waiting up to `timeout` seconds for
    another writer); a UserError names the holder if it does not come free."""
    import fcntl  # POSIX only: imported when a writer runs, not with the module

    lock_path = path.with_name(path.name + LOCK_SUFFIX)
    try:
        handle = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise UserError(f"{lock_path}: cannot open the lock: {err.strerror}") from None
    try:
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise UserError(
                        f"{path}: another writer ({_holder(handle)}) has held {lock_path.name} "
                        f"for over {timeout:g} s; nothing was changed, try again when it is done"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(handle)  # closing releases the lock


def _holder(handle: int) -> str:
    try:
        pid = os.pread(handle, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        pid = ""
    return f"pid {pid}" if pid.isdigit() else "a process"
