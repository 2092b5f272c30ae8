"""TensorFlow's profiler service on the gRPC port (`--enable_profiler`), for TensorBoard's
"Capture profile": `Profile` runs TF's profiler in this process (its public start/stop API)
and writes `<repository_root>/<session_id>/<host_name>.xplane.pb`; `Terminate` ends it.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import tempfile
import threading
import time
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from fmnist.serving.server.core.placement import Placement
from fmnist.serving.server.transport.methods import Method, parse_request
from fmnist.serving.wire import messages as pb
from fmnist.serving.wire.status import Code, StatusError, invalid_argument

_ON_THE_GRPC_POOL = SimpleNamespace(api="grpc")  # what Placement.on_pool reads of a call
# TF's defaults when a request leaves the options unset (ProfileOptions.version 0).
_DEFAULT_LEVELS = {"host_tracer_level": 2, "device_tracer_level": 1, "python_tracer_level": 0}


def available() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


class ProfilerApi:
    """tensorflow.ProfilerService: Profile and Terminate (one session at a time, as TF's)."""

    def __init__(self, placement: Placement) -> None:
        self.placement = placement  # a profile waits out its duration: on the gRPC pool
        self._lock = threading.Lock()
        self._running: dict[str, threading.Event] = {}  # session id -> its stop signal

    def services(self) -> dict[str, dict[str, Method]]:
        kinds = pb.SERVICES[pb.PROFILER_SERVICE]
        methods = {"Profile": self.profile, "Terminate": self.terminate}
        return {
            pb.PROFILER_SERVICE: {
                name: Method(*kinds[name], partial(self._handle, kinds[name][0], method))
                for name, method in methods.items()
            }
        }

    async def _handle(self, kind: type, method: Any, raw: bytes, deadline: float | None) -> Any:
        work = partial(method, parse_request(kind, raw), deadline)
        return await self.placement.on_pool(_ON_THE_GRPC_POOL, work)

    def profile(self, request: Any, deadline: float | None) -> pb.ProfileResponse:
        import tensorflow as tf

        duration_ms = request.opts.duration_ms or request.duration_ms
        if not duration_ms or not request.repository_root or not request.session_id:
            raise invalid_argument(
                "a profile request needs duration_ms, repository_root and session_id"
            )
        stop = threading.Event()
        with self._lock:
            if self._running:
                raise StatusError(Code.UNAVAILABLE, "Another profiling session is active.")
            self._running[request.session_id] = stop
        try:
            with tempfile.TemporaryDirectory() as scratch:
                tf.profiler.experimental.start(scratch, options=_options(request.opts))
                try:
                    stop.wait(_seconds_left(duration_ms / 1000, deadline))
                finally:
                    tf.profiler.experimental.stop()
                return _collect(Path(scratch), request)
        finally:
            with self._lock:
                self._running.pop(request.session_id, None)

    def terminate(self, request: Any, _deadline: float | None) -> pb.TerminateResponse:
        with self._lock:
            stop = self._running.get(request.session_id)
        if stop is not None:
            stop.set()
        return pb.TerminateResponse()


def _options(opts: Any) -> Any:
    import tensorflow as tf

    given = opts.version > 0  # version 0: the client left every level at TF's default
    levels = {name: getattr(opts, name) if given else d for name, d in _DEFAULT_LEVELS.items()}
    return tf.profiler.experimental.ProfilerOptions(**levels)


def _seconds_left(seconds: float, deadline: float | None) -> float:
    """The profiling time, cut short so that the answer beats the call's deadline."""
    if deadline is None:
        return seconds
    return max(min(seconds, deadline - time.monotonic() - 0.5), 0.0)


def _collect(scratch: Path, request: Any) -> pb.ProfileResponse:
    """Move the session's trace into the client's repository."""
    traces = sorted(scratch.glob("plugins/profile/*/*.xplane.pb"))
    if not traces or traces[0].stat().st_size == 0:
        return pb.ProfileResponse(empty_trace=True)
    target = Path(request.repository_root) / _file_name(request.session_id)
    target.mkdir(parents=True, exist_ok=True)
    host = _file_name(request.host_name or traces[0].name.removesuffix(".xplane.pb"))
    shutil.move(traces[0], target / f"{host}.xplane.pb")
    return pb.ProfileResponse(empty_trace=False)


def _file_name(text: str) -> str:
    """A session id or host name as one path component (never `..` or a separator)."""
    name = re.sub(r"[^A-Za-z0-9_.:-]", "_", text)
    return "_" if name in ("", ".", "..") else name
