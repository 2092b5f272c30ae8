"""Served versions of each model: loading by version policy, polling, labels, in-flight draining.

A poll loads every newly aspired version (integer-named directories) before it becomes
visible, and only then retires versions that left the policy: they take no new requests
and close once their in-flight requests are done, on the registry's unload thread (never
on the thread that let go: an event loop or a request thread; closing can take long). A
version that fails to load is END with its error and not retried until its directory goes
away. A base path that is missing or unreadable keeps the loaded versions serving (as TF
Serving's file-system source); one that holds no versions unloads them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from fmnist.errors import UserError
from fmnist.layout import scan_versions
from fmnist.serving.server.core.config import ModelConfig, read_model_config_file
from fmnist.serving.server.servables.base import Servable
from fmnist.serving.server.servables.loader import Loader
from fmnist.serving.wire.status import StatusError, invalid_argument, not_found

log = logging.getLogger(__name__)
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


class ModelManager:
    """The versions of one model; thread-safe; `acquire` is the request hot path. Versions
    are closed on `unloads` (one thread of the registry's)."""

    def __init__(self, config: ModelConfig, loader: Loader, unloads: Executor | None = None):
        self.config = config
        self._loader = loader
        self._unloads = unloads or ThreadPoolExecutor(1, thread_name_prefix="unload")
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._versions: dict[int, ServableVersion] = {}  # every version seen, for status
        self._latest: ServableVersion | None = None  # highest AVAILABLE version
        self._failed: dict[int, Path] = {}  # load failures, until the directory goes away
        self._base_state = "ok"  # ok | empty | unreadable: logged when it changes

    @property
    def name(self) -> str:
        return self.config.name

    # --- requests ------------------------------------------------------------------

    @contextmanager
    def acquire(
        self, version: int | None = None, label: str | None = None
    ) -> Iterator[ServableVersion]:
        """Hold a version for one request (latest, a version, or a label's version)."""
        with self._lock:
            if label is not None:
                if label not in self.config.labels:
                    raise invalid_argument(f"Unrecognized servable version label: {label}")
                version = self.config.labels[label]
            if version is None:
                held = self._latest
                if held is None:
                    raise not_found(f"Servable not found for request: Latest({self.name})")
            else:
                held = self._versions.get(version)
                if held is None or held.state != AVAILABLE:
                    raise not_found(
                        f"Servable not found for request: Specific({self.name}, {version})"
                    )
            held.in_flight += 1
        try:
            yield held
        finally:
            with self._lock:
                held.in_flight -= 1
                drained = held.state == UNLOADING and held.in_flight == 0
            if drained:
                self._close_soon(held)

    def status(self, version: int | None = None) -> list[VersionStatus]:
        """Version states, newest first (TF Serving's GetModelStatus; NOT_FOUND if none)."""
        with self._lock:
            if version is not None:
                entry = self._versions.get(version)
                if entry is None:
                    raise not_found(f"Could not find version {version} of model {self.name}")
                chosen = [entry]
            else:
                chosen = sorted(self._versions.values(), key=lambda e: -e.version)
            if not chosen:
                raise not_found(f"Could not find any versions of model {self.name}")
            return [VersionStatus(e.version, e.state, e.error) for e in chosen]

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
            current = self._versions.get(version)
            if current is None or current.state not in (LOADING, AVAILABLE):
                self._load(version, candidates[version])
        candidates = {v: p for v, p in on_disk.items() if v not in self._failed}
        aspired = self.config.policy.select(candidates)
        self._retire(lambda e: e.version not in aspired)

    def _retire(self, leaving) -> None:
        """AVAILABLE versions for which `leaving(entry)` holds take no new requests; each is
        closed once its in-flight requests are done."""
        with self._lock:
            retiring = [e for e in self._versions.values() if e.state == AVAILABLE and leaving(e)]
            for entry in retiring:
                entry.state = UNLOADING
            self._update_latest()
        for entry in retiring:
            log.info("model %s: unloading version %s", self.name, entry.version)
            with self._lock:
                drained = entry.in_flight == 0
            if drained:
                self._close_soon(entry)

    def _scan(self) -> dict[int, Path] | None:
        """The versions on disk, or None when the base path cannot be read (logged when
        that changes)."""
        base, problem = self.config.base_path, ""
        try:
            on_disk = scan_versions(base)
        except OSError as err:
            on_disk, problem = None, f"cannot list base path {base}: {err.strerror or err}"
        if on_disk is None:
            state, problem = "unreadable", problem or f"could not find base path {base}"
        else:
            state = "empty" if not on_disk else "ok"
        if state != self._base_state:
            previous, self._base_state = self._base_state, state
            loaded = self._loaded_versions()
            if problem:
                keeping = f"; keeping versions {loaded} loaded" if loaded else ""
                log.warning("model %s: %s%s", self.name, problem, keeping)
            elif state == "empty":
                log.warning(
                    "model %s: no versions found under base path %s (version directories are "
                    "named by integers, e.g. /1/)",
                    self.name,
                    base,
                )
            elif previous == "unreadable":
                log.info("model %s: base path %s readable again", self.name, base)
        return on_disk

    def _loaded_versions(self) -> list[int]:
        with self._lock:
            return sorted(v for v, e in self._versions.items() if e.state == AVAILABLE)

    def _load(self, version: int, path: Path) -> None:
        entry = ServableVersion(self.name, version, path, state=LOADING)
        with self._lock:
            self._versions[version] = entry
        try:
            model = self._loader(path)
        except Exception as err:  # any failure to load is the version's, not the server's
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            with self._lock:
                entry.state, entry.error = END, message
                self._failed[version] = path
            log.error("model %s: version %s failed to load: %s", self.name, version, message)
            return
        with self._lock:
            entry.servable, entry.state = model, AVAILABLE
            self._update_latest()
        log.info("model %s: version %s available (%s)", self.name, version, path)

    def _update_latest(self) -> None:
        available = [e for e in self._versions.values() if e.state == AVAILABLE]
        self._latest = max(available, key=lambda e: e.version, default=None)

    def _close_soon(self, entry: ServableVersion) -> None:
        try:
            self._unloads.submit(self._close, entry)
        except RuntimeError:  # the server has stopped its unload thread: the last to go
            self._close(entry)

    def _close(self, entry: ServableVersion) -> None:
        """On the unload thread: close a drained version's servable."""
        with self._lock:
            if entry.state != UNLOADING:
                return
            model, entry.servable = entry.servable, None
        try:
            model.close()
        except Exception:
            log.exception("model %s: closing version %s failed", self.name, entry.version)
        with self._lock:
            entry.state = END
        log.info("model %s: version %s unloaded", self.name, entry.version)

    def set_policy(self, config: ModelConfig) -> None:
        """Take a reloaded config's version policy (labels follow via `set_labels`)."""
        with self._lock:
            self.config = replace(config, labels=self.config.labels)

    def check_labels(self, labels: Mapping[str, int]) -> None:
        """Each label must name an AVAILABLE version (TF Serving's rule on reload)."""
        with self._lock:
            for version in labels.values():
                entry = self._versions.get(version)
                if entry is None or entry.state != AVAILABLE:
                    raise invalid_argument(
                        f"Request to assign label to version {version} of model {self.name}, "
                        "which is not currently available for inference"
                    )

    def set_labels(self, labels: Mapping[str, int]) -> None:
        with self._lock:
            self.config = replace(self.config, labels=dict(labels))

    def unload_all(self) -> None:
        self._retire(lambda _: True)


class ServableRegistry:
    """All configured models, by name, and the pollers that keep them current: of the base
    paths, and of the model config file."""

    def __init__(self, models: tuple[ModelConfig, ...], loader: Loader):
        self._loader = loader
        self._unloads = ThreadPoolExecutor(1, thread_name_prefix="unload")
        # Replaced whole (never mutated) on reload, so request threads read it without a lock.
        self.managers = {m.name: ModelManager(m, loader, self._unloads) for m in models}
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def status(self, name: str, version: int | None = None) -> list[VersionStatus]:
        if name not in self.managers:
            if version is not None:
                raise not_found(f"Could not find version {version} of model {name}")
            raise not_found(f"Could not find any versions of model {name}")
        return self.managers[name].status(version)

    def acquire(self, name: str, version: int | None = None, label: str | None = None):
        """`ModelManager.acquire` of the named model (NOT_FOUND for a model not served)."""
        manager = self.managers.get(name)
        if manager is None:
            what = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
            raise not_found(f"Servable not found for request: {what}")
        return manager.acquire(version, label)

    def poll_all(self) -> None:
        for manager in self.managers.values():
            try:
                manager.poll()
            except Exception:  # keep polling the other models, and later polls
                log.exception("model %s: poll failed", manager.name)

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
                    manager = ModelManager(config, self._loader, self._unloads)
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
                    log.info("model %s: removed from the config; unloading", name)
                    manager.unload_all()

    def start_polling(self, interval: float) -> None:
        """Poll the base paths every `interval` seconds (<= 0: never)."""
        self._every(interval, "fs-poller", self.poll_all)

    def watch_config_file(self, path: str, interval: float, models: tuple[ModelConfig, ...]):
        """TF Serving's --model_config_file_poll_wait_seconds: re-read the config file every
        `interval` seconds and reload when it changed from the last `models` it gave; a file
        that does not parse keeps the current config."""
        last = [models]

        def check() -> None:
            try:
                models = read_model_config_file(path)
                if models != last[0]:
                    self.reload(models)
                    log.info("Reloaded model config file %s", path)
                last[0] = models
            except (UserError, StatusError) as err:
                log.warning("keeping the current model config: %s", err)

        self._every(interval, "config-poller", check)

    def _every(self, interval: float, name: str, work) -> None:
        if interval <= 0:
            return

        def loop() -> None:
            while not self._stop.wait(interval):
                work()

        self._threads.append(threading.Thread(target=loop, name=name, daemon=True))
        self._threads[-1].start()

    def stop(self) -> None:
        """Stop polling, unload every version, and wait until they are closed."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        for manager in self.managers.values():
            manager.unload_all()
        self._unloads.shutdown(wait=True)
