"""Request logging as a model's `logging_config` declares it (TF Serving's `PredictionLog`
records in TFRecord files under its `filename_prefix`), off the request path.

`RequestLogger.observe` is a data plane observer: on the request's own thread it only
samples the answered Predict, Classify, Regress or MultiInference (the model's current
config decides, so a config reload turns logging on, off or changes its rate at once) and
hands the call to a bounded queue. One writer thread encodes and writes, and counts a
record written once it is flushed to the file. When the queue is
full or the disk fails the record is dropped and counted, so logging never slows or fails
a request. The API layer says what a call's request and response messages are (REST's as
the gRPC request it equals: `api.logged_calls`).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter, deque
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
POLL_SECONDS = 0.05  # how often the writer takes the calls waiting, writes and flushes them


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
    """A bounded hand-off from request threads to the writer: at most `records` calls
    waiting and `max_bytes` of requests held (waiting or being written). `offer` never
    waits and wakes no thread (a wake-up per request would cost the requests more than
    the log does): the writer takes everything waiting, every POLL_SECONDS."""

    def __init__(self, records: int = QUEUE_RECORDS, max_bytes: int = QUEUE_BYTES) -> None:
        self.records, self.max_bytes, self.bytes = records, max_bytes, 0
        self._items: deque = deque()
        self._lock = threading.Lock()

    def offer(self, item: Any, size: int) -> bool:
        with self._lock:
            if len(self._items) >= self.records or self.bytes + size > self.max_bytes:
                return False
            self._items.append(item)
            self.bytes += size
        return True

    def __len__(self) -> int:
        return len(self._items)

    def take_all(self) -> deque:
        """Everything waiting, oldest first; `release` its bytes once written."""
        with self._lock:
            items, self._items = self._items, deque()
        return items

    def release(self, size: int) -> None:
        with self._lock:
            self.bytes -= size


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
        if not self._pending.offer((call, config, int(time.time()), call.size), call.size):
            self._metrics.log_dropped(call.answered.model, "queue_full")

    def _run(self) -> None:
        while True:
            batch = self._pending.take_all()
            if batch:
                self._write_batch(batch)
                self._pending.release(sum(item[3] for item in batch))
            elif self._stopping.is_set():
                break
            self._stopping.wait(POLL_SECONDS)  # batches, not a wake-up per record
        for files in self._logs.values():
            files.close()

    def _write_batch(self, batch: deque) -> None:
        """Write the calls, flush, then count them written (in the files) or dropped."""
        written: dict[str, Counter] = {}
        for call, config, timestamp, _ in batch:
            if self._write(call, config, timestamp):
                written.setdefault(config.filename_prefix, Counter())[call.answered.model] += 1
        for prefix, models in written.items():
            try:
                self._logs[prefix].flush()
                error = None
            except OSError as err:
                error = err
            for model, count in models.items():
                if error is None:
                    self._metrics.logged(model, count)
                else:
                    self._metrics.log_dropped(model, "write_error", count)
            self._report(prefix, error)

    def _write(self, call: Any, config: RequestLogging, timestamp: int) -> bool:
        model = call.answered.model
        try:
            record = encode(call, config.sampling_rate, timestamp, self._messages)
        except Exception:  # a bug in one record's encoding must not stop the log
            log.exception("request log: cannot encode a %s of model %s", call.method, model)
            self._metrics.log_dropped(model, "encode_error")
            return False
        files = self._logs.get(config.filename_prefix)
        if files is None:
            files = RotatingLog(config.filename_prefix, self._file_bytes, self._total_bytes)
            self._logs[config.filename_prefix] = files
        try:
            files.write(record)
        except OSError as err:
            self._metrics.log_dropped(model, "write_error")
            self._report(config.filename_prefix, err)
            return False
        return True

    def _report(self, prefix: str, error: OSError | None) -> None:
        """Log when a prefix starts failing (records are dropped) and when it recovers."""
        if error is not None and prefix not in self._failing:
            self._failing.add(prefix)
            log.warning("request log %s: dropping records: %s", prefix, error)
        elif error is None and prefix in self._failing:
            self._failing.discard(prefix)
            log.info("request log %s: writing again", prefix)
