"""Served versions of each model: loading by version policy, polling, labels, in-flight draining.

A poll lists a model's base path (integer-named directories only, via `fmnist.layout`),
loads every newly aspired version completely before it becomes visible, and only then
retires versions that left the policy. A retired version stops taking new requests at
once but is closed only when its last in-flight request has finished. A version that
fails to load is reported (state END with the error) and not retried until its directory
goes away, so a broken publish leaves the previous version serving. As in TF Serving's
file-system source, a base path that is missing (or cannot be listed) changes nothing:
the loaded versions keep serving; one that exists but holds no versions unloads them.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from fmnist.errors import UserError
from fmnist.layout import scan_versions
from fmnist.serving.server.core.config import ModelConfig
from fmnist.serving.server.servables.base import Servable
from fmnist.serving.server.servables.loader import Loader
from fmnist.serving.wire.status import StatusError, invalid_argument, not_found

# ModelVersionStatus.State names, as GetModelStatus reports them.
START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"


@dataclass
class ServableVersion:
    """One version of one model: its state, its servable once loaded, and the requests
    currently holding it."""

    name: str
    version: int
    path: Path
    state: str = START
    servable: Servable | None = None  # from AVAILABLE until unloaded
    error: str = ""  # why it failed to load (state END)
    in_flight: int = 0


@dataclass(frozen=True)
class VersionStatus:
    version: int
    state: str
    error: str = ""


Log = Callable[[str], None]


class ModelManager:
    """The versions of one model; thread-safe; `acquire` is the request hot path."""

    def __init__(self, config: ModelConfig, loader: Loader, log: Log | None = None):
        self.config = config
        self._loader = loader
        self._log = log or _stderr
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._servables: dict[int, ServableVersion] = {}  # every version seen, for status
        self._latest: ServableVersion | None = None  # highest AVAILABLE version
        self._failed: dict[int, Path] = {}  # load failures, until the directory goes away
        self._base_state = "ok"  # ok | missing | empty | error: logged when it changes

    @property
    def name(self) -> str:
        return self.config.name

    # --- requests ------------------------------------------------------------------

    @contextmanager
    def acquire(
        self, version: int | None = None, label: str | None = None
    ) -> Iterator[ServableVersion]:
        """Hold a servable for one request (latest, a version, or a label's version)."""
        with self._lock:
            if label is not None:
                if label not in self.config.labels:
                    raise invalid_argument(f"Unrecognized servable version label: {label}")
                version = self.config.labels[label]
            if version is None:
                servable = self._latest
                if servable is None:
                    raise not_found(f"Servable not found for request: Latest({self.name})")
            else:
                servable = self._servables.get(version)
                if servable is None or servable.state != AVAILABLE:
                    raise not_found(
                        f"Servable not found for request: Specific({self.name}, {version})"
                    )
            servable.in_flight += 1
        try:
            yield servable
        finally:
            self._release(servable)

    def _release(self, servable: ServableVersion) -> None:
        with self._lock:
            servable.in_flight -= 1
            drained = servable.state == UNLOADING and servable.in_flight == 0
        if drained:
            self._finish_unload(servable)

    def status(self, version: int | None = None) -> list[VersionStatus]:
        """Version states, newest first (TF Serving's GetModelStatus; NOT_FOUND if none)."""
        with self._lock:
            if version is not None:
                servable = self._servables.get(version)
                if servable is None:
                    raise not_found(f"Could not find version {version} of model {self.name}")
                chosen = [servable]
            else:
                chosen = sorted(self._servables.values(), key=lambda s: -s.version)
            if not chosen:
                raise not_found(f"Could not find any versions of model {self.name}")
            return [VersionStatus(s.version, s.state, s.error) for s in chosen]

    # --- versions ------------------------------------------------------------------

    def poll(self) -> None:
        """Bring the loaded versions in line with the base path and the version policy
        (one poll at a time: the file-system poller and a config reload may both call it)."""
        with self._poll_lock:
            self._poll()

    def _poll(self) -> None:
        on_disk = self._scan()
        if on_disk is None:
            return  # keep serving what is loaded; a later poll recovers
        self._failed = {v: p for v, p in self._failed.items() if on_disk.get(v) == p}
        candidates = {v: p for v, p in on_disk.items() if v not in self._failed}
        for version in sorted(self.config.policy.select(candidates), reverse=True):
            current = self._servables.get(version)
            if current is None or current.state not in (LOADING, AVAILABLE):
                self._load(version, candidates[version])
        candidates = {v: p for v, p in on_disk.items() if v not in self._failed}
        aspired = self.config.policy.select(candidates)
        with self._lock:
            retiring = [
                s
                for s in self._servables.values()
                if s.state == AVAILABLE and s.version not in aspired
            ]
            for servable in retiring:
                servable.state = UNLOADING
            self._update_latest()
            drained = [s for s in retiring if s.in_flight == 0]
        for servable in retiring:
            self._log(f"model {self.name}: unloading version {servable.version}")
        for servable in drained:
            self._finish_unload(servable)

    def _scan(self) -> dict[int, Path] | None:
        """The versions on disk, or None when the base path cannot be read (logged once)."""
        base = self.config.base_path
        try:
            on_disk = scan_versions(base)
        except OSError as err:
            on_disk, state = None, "error"
            detail = f"cannot list base path {base}: {err.strerror or err}"
        else:
            state = "missing" if on_disk is None else "empty" if not on_disk else "ok"
            detail = ""
        if state != self._base_state:
            previous, self._base_state = self._base_state, state
            loaded = self._loaded_versions()
            keeping = f"; keeping versions {loaded} loaded" if loaded else ""
            if state == "missing":
                self._log(f"model {self.name}: could not find base path {base}{keeping}")
            elif state == "error":
                self._log(f"model {self.name}: {detail}{keeping}")
            elif state == "empty":
                self._log(
                    f"model {self.name}: no versions found under base path {base} "
                    "(version directories are named by integers, e.g. /1/)"
                )
            elif previous in ("missing", "error"):
                self._log(f"model {self.name}: base path {base} readable again")
        return on_disk

    def _loaded_versions(self) -> list[int]:
        with self._lock:
            return sorted(v for v, s in self._servables.items() if s.state == AVAILABLE)

    def _load(self, version: int, path: Path) -> None:
        servable = ServableVersion(self.name, version, path, state=LOADING)
        with self._lock:
            self._servables[version] = servable
        try:
            model = self._loader(path)
        except Exception as err:  # any failure to load is the version's, not the server's
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            with self._lock:
                servable.state, servable.error = END, message
                self._failed[version] = path
            self._log(f"model {self.name}: version {version} failed to load: {message}")
            return
        with self._lock:
            servable.servable, servable.state = model, AVAILABLE
            self._update_latest()
        self._log(f"model {self.name}: version {version} available ({path})")

    def _update_latest(self) -> None:
        available = [s for s in self._servables.values() if s.state == AVAILABLE]
        self._latest = max(available, key=lambda s: s.version, default=None)

    def _finish_unload(self, servable: ServableVersion) -> None:
        with self._lock:
            if servable.state != UNLOADING:
                return
            model, servable.servable = servable.servable, None
            servable.state = END
        model.close()
        self._log(f"model {self.name}: version {servable.version} unloaded")

    def set_policy(self, config: ModelConfig) -> None:
        """Take a reloaded config's version policy (labels follow via `set_labels`)."""
        with self._lock:
            self.config = replace(config, labels=self.config.labels)

    def check_labels(self, labels: Mapping[str, int]) -> None:
        """Each label must name an AVAILABLE version (TF Serving's rule on reload)."""
        with self._lock:
            for version in labels.values():
                servable = self._servables.get(version)
                if servable is None or servable.state != AVAILABLE:
                    raise invalid_argument(
                        f"Request to assign label to version {version} of model {self.name}, "
                        "which is not currently available for inference"
                    )

    def set_labels(self, labels: Mapping[str, int]) -> None:
        with self._lock:
            self.config = replace(self.config, labels=dict(labels))

    def unload_all(self) -> None:
        with self._lock:
            live = [s for s in self._servables.values() if s.state == AVAILABLE]
            for servable in live:
                servable.state = UNLOADING
            self._latest = None
            drained = [s for s in live if s.in_flight == 0]
        for servable in drained:
            self._finish_unload(servable)


class ServableRegistry:
    """All configured models, by name, and the file-system poller that keeps them current."""

    def __init__(self, models: tuple[ModelConfig, ...], loader: Loader, log: Log | None = None):
        # Replaced whole (never mutated) on reload, so request threads read it without a lock.
        self.managers = {m.name: ModelManager(m, loader, log) for m in models}
        self._loader = loader
        self._log = log or _stderr
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def status(self, name: str, version: int | None = None) -> list[VersionStatus]:
        if name not in self.managers:
            if version is not None:
                raise not_found(f"Could not find version {version} of model {name}")
            raise not_found(f"Could not find any versions of model {name}")
        return self.managers[name].status(version)

    @contextmanager
    def acquire(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> Iterator[ServableVersion]:
        if name not in self.managers:
            what = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
            raise not_found(f"Servable not found for request: {what}")
        with self.managers[name].acquire(version, label) as servable:
            yield servable

    def poll_all(self) -> None:
        for manager in self.managers.values():
            try:
                manager.poll()
            except Exception as err:  # keep polling the other models, and later polls
                self._log(f"model {manager.name}: poll failed: {err}")

    def check_labels(self) -> None:
        """Labels must name available versions when the server starts (TF Serving's rule)."""
        for manager in self.managers.values():
            for label, version in manager.config.labels.items():
                try:
                    with manager.acquire(version):
                        pass
                except StatusError:
                    raise UserError(
                        f"label '{label}' of model {manager.name} names version {version}, "
                        "which is not available"
                    ) from None

    def reload(self, models: tuple[ModelConfig, ...]) -> None:
        """Serve `models` from now on, as TF Serving's config reload does: new models load
        (before they become visible), models that stay take their new policy and labels and
        keep serving, removed ones stop taking requests and unload once drained. A label
        that names no available version fails the reload and leaves the old labels."""
        with self._reload_lock:
            current = self.managers
            managers = {}
            for config in models:
                manager = current.get(config.name)
                if manager is None or manager.config.base_path != config.base_path:
                    manager = ModelManager(config, self._loader, self._log)
                else:
                    manager.set_policy(config)
                manager.poll()
                managers[config.name] = manager
            try:
                for config in models:
                    managers[config.name].check_labels(config.labels)
            except StatusError:
                for name, manager in managers.items():
                    if current.get(name) is not manager:
                        manager.unload_all()
                raise
            for config in models:
                managers[config.name].set_labels(config.labels)
            self.managers = managers
            for name, manager in current.items():
                if managers.get(name) is not manager:
                    self._log(f"model {name}: removed from the config; unloading")
                    manager.unload_all()

    def start_polling(self, interval: float) -> None:
        if interval <= 0:
            return
        self._thread = threading.Thread(
            target=self._poll_loop, args=(interval,), name="fs-poller", daemon=True
        )
        self._thread.start()

    def _poll_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.poll_all()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for manager in self.managers.values():
            manager.unload_all()


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
