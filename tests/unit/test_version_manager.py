"""The version manager (serving/server/core/registry.py) over real directories and a fake
loader: which versions load, which serve, how they drain and unload. No TensorFlow."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from fmnist.serving.server.core.config import ModelConfig, VersionPolicy
from fmnist.serving.server.core.registry import AVAILABLE, END, UNLOADING, ModelManager
from fmnist.serving.wire.status import Code, StatusError


class FakeModel:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.closed = False
        self.closed_on = ""  # the thread that closed it

    def close(self) -> None:
        self.closed_on = threading.current_thread().name
        self.closed = True


class Lines(logging.Handler):
    """The registry's log messages, in a list."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


REGISTRY_LOG = logging.getLogger("fmnist.serving.server.core.registry")


@pytest.fixture(autouse=True)
def _registry_log():
    level = REGISTRY_LOG.level
    REGISTRY_LOG.setLevel(logging.INFO)
    yield
    REGISTRY_LOG.setLevel(level)
    for handler in [h for h in REGISTRY_LOG.handlers if isinstance(h, Lines)]:
        REGISTRY_LOG.removeHandler(handler)


def wait_until(condition, timeout: float = 10.0) -> None:
    """Versions close on the manager's unload thread: wait for it."""
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.001)


def fake_loader(path: Path) -> FakeModel:
    if (path / "broken").exists():
        raise ValueError(f"cannot load {path}: broken\nsecond line")
    return FakeModel(path)


def manager(base: Path, versions: list[int], policy: VersionPolicy | None = None, **labels):
    base.mkdir(exist_ok=True)
    for version in versions:
        (base / str(version)).mkdir()
    logs: list[str] = []
    REGISTRY_LOG.addHandler(Lines(logs))
    config = ModelConfig("m", base, policy=policy or VersionPolicy(), labels=labels)
    models = ModelManager(config, fake_loader)
    models.poll()
    return models, logs


def served_version(models: ModelManager, **choice) -> int:
    with models.acquire(**choice) as servable:
        return servable.version


@pytest.mark.parametrize(
    ("policy", "on_disk", "loaded"),
    [
        (VersionPolicy(), [1, 2, 10], [10]),
        (VersionPolicy("latest", num_versions=2), [1, 2, 10], [2, 10]),
        (VersionPolicy("all"), [1, 2, 10], [1, 2, 10]),
        (VersionPolicy("specific", versions=(2, 7)), [1, 2, 10], [2]),
    ],
)
def test_policy_selects_the_loaded_versions(tmp_path, policy, on_disk, loaded) -> None:
    models, _ = manager(tmp_path / "m", on_disk, policy)
    states = {s.version: s.state for s in models.status()}
    assert sorted(v for v, state in states.items() if state == AVAILABLE) == loaded


def test_unpinned_requests_get_the_highest_available_version(tmp_path) -> None:
    models, _ = manager(tmp_path / "m", [3, 12], VersionPolicy("all"))
    assert served_version(models) == 12


def test_a_label_resolves_to_its_version(tmp_path) -> None:
    models, _ = manager(tmp_path / "m", [3, 12], VersionPolicy("all"), stable=3)
    assert served_version(models, label="stable") == 3


@pytest.mark.parametrize(
    ("choice", "code", "message"),
    [
        ({"version": 4}, Code.NOT_FOUND, "Specific(m, 4)"),
        ({"label": "canary"}, Code.INVALID_ARGUMENT, "Unrecognized servable version label"),
    ],
)
def test_unknown_choices_are_refused(tmp_path, choice, code, message) -> None:
    models, _ = manager(tmp_path / "m", [3])
    with pytest.raises(StatusError) as caught:
        served_version(models, **choice)
    assert caught.value.code == code and message in caught.value.message


def test_a_new_version_replaces_the_old_one_which_is_closed(tmp_path) -> None:
    models, _ = manager(tmp_path / "m", [1])
    with models.acquire() as old:
        pass
    (tmp_path / "m" / "2").mkdir()
    models.poll()
    assert served_version(models) == 2
    wait_until(lambda: old.state == END)
    assert old.state == END and old.servable is None


def test_a_version_in_use_drains_before_it_is_closed(tmp_path) -> None:
    models, _ = manager(tmp_path / "m", [1])
    with models.acquire() as held:
        model = held.servable
        (tmp_path / "m" / "2").mkdir()
        models.poll()
        assert held.state == UNLOADING and not model.closed
    wait_until(lambda: held.state == END)
    assert held.state == END and model.closed


def test_a_version_closes_on_the_unload_thread_not_the_one_that_let_go(tmp_path) -> None:
    """Closing can take long (a TF session, a batch queue draining): never on the thread
    of the last request (an event loop), nor on the poller's."""
    models, _ = manager(tmp_path / "m", [1])
    with models.acquire() as held:
        model = held.servable
        (tmp_path / "m" / "2").mkdir()
        models.poll()
    wait_until(lambda: model.closed)
    assert model.closed_on.startswith("unload")
    assert model.closed_on != threading.current_thread().name


def test_a_failed_load_is_end_with_the_first_line_of_its_error(tmp_path) -> None:
    base = tmp_path / "m"
    base.mkdir()
    (base / "5").mkdir()
    (base / "5" / "broken").touch()
    models, logs = manager(base, [])
    (status,) = models.status()
    assert (status.state, status.error) == (END, f"cannot load {base / '5'}: broken")
    assert any("version 5 failed to load" in line for line in logs)


def test_a_failed_version_is_not_retried_while_its_directory_stays(tmp_path) -> None:
    base = tmp_path / "m"
    base.mkdir()
    (base / "5").mkdir()
    (base / "5" / "broken").touch()
    models, logs = manager(base, [])
    models.poll()
    assert sum("failed to load" in line for line in logs) == 1


def test_a_deleted_base_path_keeps_the_loaded_versions_serving(tmp_path) -> None:
    base = tmp_path / "m"
    models, logs = manager(base, [1])
    (base / "1").rmdir()
    base.rmdir()
    models.poll()
    assert served_version(models) == 1
    assert any("could not find base path" in line for line in logs)


def test_status_without_versions_is_not_found(tmp_path) -> None:
    models, _ = manager(tmp_path / "m", [])
    with pytest.raises(StatusError) as caught:
        models.status()
    assert caught.value.code == Code.NOT_FOUND
