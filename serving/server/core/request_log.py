"""Request logging as a model's `logging_config` declares it (TF Serving's `PredictionLog`
records in TFRecord files under its `filename_prefix`), off the request path.

`RequestLogger.observe` is a data plane observer: on the request's own thread it only
samples the answered Predict, Classify, Regress or MultiInference (the model's current
config decides, so a config reload turns logging on, off or changes its rate at once) and
hands the call to a bounded queue. One writer thread encodes and writes. When the queue is
full or the disk fails the record is dropped and counted, so logging never slows or fails
a request. The API layer says what a call's request and response messages are (REST's as
the gRPC request it equals: `api.logged_calls`).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from fmnist.serving.server.core.config import RequestLogging
from fmnist.serving.server.core.log_files import RotatingLog
from fmnist.serving.wire.prediction_log import prediction_log
from fmnist.serving.wire.status import Code

log = logging.getLogger(__name__)
LOGGED_METHODS = frozenset({"predict", "classify", "regress", "multi_inference"})
QUEUE_RECORDS = 4096
QUEUE_BYTES = 256 << 20  # requests waiting to be logged hold at most this much memory
IDLE_SECONDS = 0.5  # the writer flushes whenever the queue runs dry, and wakes this often


def wire_messages(call: Any) -> tuple[Any, Any]:
    """A gRPC call's request and response messages, as they were sent."""
    return call.request, call.response


def encode(call: Any, sampling_rate: float, timestamp: int, messages=wire_messages) -> bytes:
    """The serialized PredictionLog of an answered call; `messages(call)` gives its request
    and response messages."""
    request, response = messages(call)
    entry = prediction_log(request, response, timestamp_secs=timestamp, sampling_rate=sampling_rate)
    return entry.SerializeToString()


class PendingCalls:
    """A bounded hand-off from request threads to the writer: at most `records` calls and
    `max_bytes` of their requests; `offer` never waits."""

    def __init__(self, records: int = QUEUE_RECORDS, max_bytes: int = QUEUE_BYTES) -> None:
        self.records, self.max_bytes, self.bytes = records, max_bytes, 0
        self._items: deque = deque()
        self._ready = threading.Condition()

    def offer(self, item: Any, size: int) -> bool:
        with self._ready:
            if len(self._items) >= self.records or self.bytes + size > self.max_bytes:
                return False
            self._items.append((item, size))
            self.bytes += size
            self._ready.notify()
        return True

    def __len__(self) -> int:
        return len(self._items)

    def wake(self) -> None:
        with self._ready:
            self._ready.notify_all()

    def take(self, timeout: float) -> Any | None:
        """The oldest item, or None if none came within `timeout` seconds."""
        with self._ready:
            if not self._items:
                self._ready.wait(timeout)
            if not self._items:
                return None
            item, size = self._items.popleft()
            self.bytes -= size
            return item


class RequestLogger:
    """Samples answered calls of models whose config logs, and writes them on a thread."""

    def __init__(
        self,
        registry: Any,
        metrics: Any,
        file_bytes: int,
        total_bytes: int,
        messages: Callable[[Any], tuple[Any, Any]] = wire_messages,
    ) -> None:
        self._messages = messages  # the API layer's: a REST call as its gRPC equivalent
        self._registry = registry  # its managers' configs say which models log, and how much
        self._metrics = metrics
        self._file_bytes, self._total_bytes = file_bytes, total_bytes
        self._pending = PendingCalls()
        self._logs: dict[str, RotatingLog] = {}
        self._failing: set[str] = set()  # prefixes whose last write failed (logged once)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued (up to `timeout` seconds), then close the files."""
        self._stopping.set()
        self._pending.wake()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def observe(self, call: Any) -> None:
        """On the request's thread: sample, and queue the call (or count it dropped)."""
        if call.code is not Code.OK or call.method not in LOGGED_METHODS or not call.answered:
            return
        manager = self._registry.managers.get(call.answered.model)
        config = manager.config.logging if manager is not None else None
        if config is None or random.random() >= config.sampling_rate:
            return
        if not self._pending.offer((call, config, int(time.time())), call.size):
            self._metrics.log_dropped(call.answered.model, "queue_full")

    def _run(self) -> None:
        while True:
            item = self._pending.take(IDLE_SECONDS)
            if item is not None:
                self._write(*item)
            if item is None or not self._pending:
                self._flush()
            if item is None and self._stopping.is_set():
                break
        for files in self._logs.values():
            files.close()

    def _write(self, call: Any, config: RequestLogging, timestamp: int) -> None:
        model = call.answered.model
        try:
            record = encode(call, config.sampling_rate, timestamp, self._messages)
        except Exception:  # a bug in one record's encoding must not stop the log
            log.exception("request log: cannot encode a %s of model %s", call.method, model)
            self._metrics.log_dropped(model, "encode_error")
            return
        files = self._logs.get(config.filename_prefix)
        if files is None:
            files = RotatingLog(config.filename_prefix, self._file_bytes, self._total_bytes)
            self._logs[config.filename_prefix] = files
        try:
            files.write(record)
        except OSError as err:
            self._metrics.log_dropped(model, "write_error")
            self._report(config.filename_prefix, err)
            return
        self._metrics.logged(model)
        self._report(config.filename_prefix, None)

    def _flush(self) -> None:
        for prefix, files in self._logs.items():
            try:
                files.flush()
            except OSError as err:
                self._report(prefix, err)

    def _report(self, prefix: str, error: OSError | None) -> None:
        """Log when a prefix starts failing (records are dropped) and when it recovers."""
        if error is not None and prefix not in self._failing:
            self._failing.add(prefix)
            log.warning("request log %s: dropping records: %s", prefix, error)
        elif error is None and prefix in self._failing:
            self._failing.discard(prefix)
            log.info("request log %s: writing again", prefix)
