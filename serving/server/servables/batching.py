"""TF Serving's request batching (`--enable_batching`): concurrent Predicts share model calls.

A scheduler (shared by every version the wrapped loader loads, as TF Serving's
SharedBatchScheduler is) runs at most `num_batch_threads` batches at once, on its batch
threads or, when a batch may run at once, on the thread of the request that completed it
(a lone client then pays no thread hand-off). It keeps one queue per model version and
request shape: signature, output filter, input names, dtypes and every dim but dim 0.
Requests in one queue are concatenated along dim 0 into one `model.predict` call, padded
up to the next `allowed_batch_sizes` entry (copies of a real row, dropped from the
outputs), and the outputs are split back to each caller. The queue semantics follow
`shared_batch_scheduler.h`: a batch closes when it is full, or when its first request
has waited `batch_timeout_micros` and a batch thread is free; at most
`max_enqueued_batches` batches wait; a request larger than `max_batch_size` is refused,
or split across batches with `enable_large_batch_splitting`.

Differences, said plainly: requests whose inner dims differ are queued apart instead of
padded (`pad_variable_length_inputs` is accepted and changes nothing, so every caller gets
the answer for exactly its own input); requests without a shared batch dim, with zero
rows, relying on signature defaults, or for a signature whose declared dim 0 is fixed run
alone; Classify, Regress and MultiInference run unbatched. No TensorFlow import: the
TFLite server batches too.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmnist.serving.server.servables.base import Outputs, Servable
from fmnist.serving.server.servables.examples import ExampleResult
from fmnist.serving.wire import messages as pb
from fmnist.serving.wire.signature import DEFAULT_SIGNATURE, Signature
from fmnist.serving.wire.status import Code, StatusError

# (rows in the model call incl. padding, padding rows, requests merged) after every batch.
BatchObserver = Callable[[int, int, int], None]
_IDLE_WAIT_S = 1.0  # how long an idle batch thread sleeps before re-checking (cv-woken)
_CLOSE_WAIT_S = 60.0  # how long unloading a version waits for its queued batches
_BACKSTOP_S = 0.002  # batch threads take a timed-out batch only if its callers have not


@dataclass(frozen=True)
class BatchingConfig:
    """TF Serving's BatchingParameters (session_bundle_config.proto), with its defaults."""

    max_batch_size: int = 1000  # SharedBatchScheduler QueueOptions defaults
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = os.cpu_count() or 1  # port::MaxParallelism()
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int | None = None  # with large batch splitting


def with_batching(
    loader: Callable[[Path], Servable],
    config: BatchingConfig,
    observe: BatchObserver | None = None,
) -> Callable[[Path], Servable]:
    """`loader` whose servables batch concurrent `predict` calls (see the module docstring);
    `config` is checked here, so a bad one fails at start-up, not at the first request."""
    check_config(config)
    scheduler = BatchScheduler(config, observe)

    def load(version_dir: Path) -> Servable:
        return BatchingServable(loader(version_dir), scheduler)

    return load


def check_config(config: BatchingConfig) -> None:
    """ValueError worded as TF Serving's (batching_session.cc, bundle_factory_util.cc,
    shared_batch_scheduler.h) for parameters it rejects."""
    if config.max_batch_size <= 0:
        raise ValueError(f"max_batch_size must be positive; was {config.max_batch_size}")
    if config.batch_timeout_micros < 0:
        raise ValueError(
            f"batch_timeout_micros must be non-negative; was {config.batch_timeout_micros}"
        )
    if config.max_enqueued_batches < 0:
        raise ValueError(
            f"max_enqueued_batches must be non-negative; was {config.max_enqueued_batches}"
        )
    if config.num_batch_threads < 1:
        raise ValueError(f"num_batch_threads must be positive; was {config.num_batch_threads}")
    limit = execution_limit(config)
    if limit <= 0 or limit > config.max_batch_size:
        raise ValueError(
            f"max_execution_batch_size must be positive and at most max_batch_size "
            f"({config.max_batch_size}); was {limit}"
        )
    sizes = config.allowed_batch_sizes
    if sizes:
        if any(b <= a for a, b in itertools.pairwise(sizes)) or sizes[0] <= 0:
            raise ValueError("allowed_batch_sizes entries must be monotonically increasing")
        if sizes[-1] != config.max_batch_size:
            raise ValueError(
                "Last entry in allowed_batch_sizes must match max_batch_size; last entry was "
                f"{sizes[-1]}; expected {config.max_batch_size}"
            )


def execution_limit(config: BatchingConfig) -> int:
    """The most rows one model call gets: max_execution_batch_size when splitting large
    requests (default max_batch_size), else max_batch_size."""
    if config.enable_large_batch_splitting and config.max_execution_batch_size is not None:
        return config.max_execution_batch_size
    return config.max_batch_size


class BatchingServable:
    """A servable whose `predict` goes through the scheduler (Classify, Regress and
    MultiInference run unbatched, as in TF Serving)."""

    def __init__(self, model: Servable, scheduler: BatchScheduler):
        self.model = model
        self.scheduler = scheduler
        self._unbatchable: set[Hashable] = set()  # queue keys whose outputs could not be split
        self.closing = False  # set by close(): its open batches run without waiting

    @property
    def signatures(self) -> Mapping[str, Signature]:
        return self.model.signatures

    def predict(
        self,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
        *,
        deadline: float | None = None,
    ) -> tuple[str, Outputs]:
        key, rows = self._queue_key(signature_name, inputs, output_filter)
        if key is None:
            return self.model.predict(signature_name, inputs, output_filter, deadline=deadline)
        return self.scheduler.submit(self, key, signature_name, inputs, rows, deadline)

    async def predict_async(
        self,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
        *,
        deadline: float | None = None,
        executor: Executor | None = None,
    ) -> tuple[str, Outputs]:
        """Queued from the event loop itself, no thread waiting (see `submit_async`)."""
        key, rows = self._queue_key(signature_name, inputs, output_filter)
        if key is None:
            return await self.model.predict_async(
                signature_name, inputs, output_filter, deadline=deadline, executor=executor
            )
        return await self.scheduler.submit_async(self, key, signature_name, inputs, rows, deadline)

    def classify(
        self,
        signature_name: str,
        serialized: Sequence[bytes],
        check_method: bool = False,
        *,
        deadline: float | None = None,
    ) -> tuple[str, pb.ClassificationResult]:
        return self.model.classify(signature_name, serialized, check_method, deadline=deadline)

    def regress(
        self,
        signature_name: str,
        serialized: Sequence[bytes],
        check_method: bool = False,
        *,
        deadline: float | None = None,
    ) -> tuple[str, pb.RegressionResult]:
        return self.model.regress(signature_name, serialized, check_method, deadline=deadline)

    def multi_inference(
        self,
        tasks: Sequence[tuple[str, str]],
        serialized: Sequence[bytes],
        *,
        deadline: float | None = None,
    ) -> list[tuple[str, ExampleResult]]:
        return self.model.multi_inference(tasks, serialized, deadline=deadline)

    def metadata(self) -> pb.SignatureDefMap:
        return self.model.metadata()

    def close(self) -> None:
        """Let this version's queued requests finish (bounded), then close the model."""
        self.closing = True
        self.scheduler.drain(self, _CLOSE_WAIT_S)
        self.model.close()

    def mark_unbatchable(self, key: Hashable) -> None:
        """Requests of this queue key run alone from now on (their outputs cannot be split)."""
        self._unbatchable.add(key)

    def _queue_key(
        self, signature_name: str, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str]
    ) -> tuple[Hashable | None, int]:
        """The queue a request joins and its size, or (None, 0) if it must run alone."""
        if not inputs:
            return None, 0
        parts, rows = [], None
        for name, value in inputs.items():
            if not isinstance(value, np.ndarray) or value.ndim == 0:
                return None, 0
            if rows is None:
                rows = value.shape[0]
            elif value.shape[0] != rows:
                return None, 0  # no shared batch dimension: the model reports it
            parts.append((name, value.dtype.str, value.shape[1:]))
        if not rows or not _batchable_signature(self.model, signature_name, inputs):
            return None, 0
        key = (signature_name or DEFAULT_SIGNATURE, tuple(output_filter), tuple(sorted(parts)))
        return (None, 0) if key in self._unbatchable else (key, rows)


def _batchable_signature(
    model: Servable, signature_name: str, inputs: Mapping[str, np.ndarray]
) -> bool:
    """False when the signature needs inputs the request leaves to defaults, or declares a
    fixed dim 0 (a merged batch would not fit it)."""
    signature = model.signatures.get(signature_name or DEFAULT_SIGNATURE)
    if signature is None:
        return True  # the model itself answers that the signature is missing
    if set(signature.inputs) != set(inputs):
        return False
    return not any(info.shape and info.shape[0] >= 0 for info in signature.inputs.values())


class _Request:
    """One caller's request: its inputs, where its answer goes, and its pieces when split."""

    __slots__ = (
        "deadline",
        "done",
        "error",
        "inputs",
        "name",
        "on_done",
        "outputs",
        "pieces",
        "rows",
    )

    def __init__(self, inputs: Mapping[str, np.ndarray], rows: int, deadline: float | None):
        self.inputs, self.rows, self.deadline = inputs, rows, deadline
        self.done = threading.Event()
        self.on_done: Callable[[], None] | None = None  # an event loop's caller: wake it
        self.name = ""
        self.outputs: dict[str, np.ndarray] | None = None
        self.error: BaseException | None = None
        self.pieces: list[_Task] = []


class _Task:
    """Rows [start, stop) of a request, as placed in one batch."""

    __slots__ = ("batch", "outputs", "request", "running", "start", "stop")

    def __init__(self, request: _Request, start: int, stop: int):
        self.request, self.start, self.stop = request, start, stop
        self.batch: _Batch | None = None
        self.outputs: dict[str, np.ndarray] | None = None
        self.running = False

    @property
    def size(self) -> int:
        return self.stop - self.start

    def value(self, name: str) -> np.ndarray:
        value = self.request.inputs[name]
        return value if self.size == self.request.rows else value[self.start : self.stop]


class _Batch:
    __slots__ = ("size", "started", "tasks", "waited")

    def __init__(self) -> None:
        self.tasks: list[_Task] = []
        self.size = 0
        self.waited = False  # a caller waits on a thread: it runs the batch at its timeout
        self.started = 0.0  # monotonic time its first task arrived


class _Queue:
    """Batches of one model version and request shape; the last batch is the open one."""

    def __init__(self, model: BatchingServable, key: Hashable, signature_name: str):
        self.model, self.key, self.signature_name = model, key, signature_name
        self.batches: deque[_Batch] = deque([_Batch()])

    def ready(self, now: float, limit: int, timeout_s: float) -> bool:
        """Whether a batch can be taken now (TF Serving's IsOpenBatchSchedulable)."""
        if len(self.batches) > 1:
            return True
        open_batch = self.batches[0]
        return open_batch.size > 0 and (
            open_batch.size >= limit or now >= open_batch.started + timeout_s or self.model.closing
        )

    def take(self) -> _Batch:
        batch = self.batches.popleft()
        if not self.batches:
            self.batches.append(_Batch())
        return batch

    def empty(self) -> bool:
        return len(self.batches) == 1 and self.batches[0].size == 0


class BatchScheduler:
    """Queues and batch threads; one condition variable guards all of it."""

    def __init__(self, config: BatchingConfig, observe: BatchObserver | None = None):
        self.config = config
        self.limit = execution_limit(config)
        self.timeout_s = config.batch_timeout_micros / 1e6
        self._observe = observe
        self._cv = threading.Condition()
        self._queues: dict[tuple[int, Hashable], _Queue] = {}
        self._running: dict[int, int] = {}  # id(model) -> batches being processed
        self._threads: list[threading.Thread] = []
        self._draining = 0  # drain() calls waiting
        self._free = config.num_batch_threads  # batch slots: batches that may run at once

    # --- callers ---------------------------------------------------------------------

    def submit(
        self,
        model: BatchingServable,
        key: Hashable,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        rows: int,
        deadline: float | None,
    ) -> tuple[str, dict[str, np.ndarray]]:
        """Queue a request, wait for its batch(es) to run, and return its own outputs."""
        request = self._request(inputs, rows, deadline)
        with self._cv:
            self._enqueue(self._queue(model, key, signature_name), request, waited=True)
            # A batch that may run now runs on this caller's own thread: no hand-off to a
            # batch thread and back, which is most of batching's cost to a lone client.
            claim = self._claim()
            if claim is None:
                self._cv.notify()
        if claim is not None:
            self._run(*claim)
        self._wait(request)
        return self._answer(request)

    async def submit_async(
        self,
        model: BatchingServable,
        key: Hashable,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        rows: int,
        deadline: float | None,
    ) -> tuple[str, dict[str, np.ndarray]]:
        """`submit` for a caller on an event loop: no thread waits for the request. A batch
        thread runs its batch, then wakes the loop; at the deadline, or if the caller goes
        away, the request leaves the queue."""
        request = self._request(inputs, rows, deadline)
        loop = asyncio.get_running_loop()
        answered = loop.create_future()
        request.on_done = lambda: _wake(loop, answered)
        with self._cv:
            self._enqueue(self._queue(model, key, signature_name), request, waited=False)
            self._cv.notify()
        try:
            if deadline is None:
                await answered
            else:
                await asyncio.wait_for(answered, max(deadline - time.monotonic(), 0.0))
        except asyncio.TimeoutError:
            self._expire(request)
        except asyncio.CancelledError:
            self._expire(request)
            raise
        return self._answer(request)

    def _request(self, inputs: Mapping[str, np.ndarray], rows: int, deadline) -> _Request:
        if rows > self.config.max_batch_size:
            raise StatusError(
                Code.INVALID_ARGUMENT,
                f"Task size {rows} is larger than maximum input batch size "
                f"{self.config.max_batch_size}",
            )
        return _Request(inputs, rows, deadline)

    def _queue(self, model: BatchingServable, key: Hashable, signature_name: str) -> _Queue:
        """Under the lock: the queue of this model and request shape (made if new)."""
        self._start_threads()
        queue = self._queues.get((id(model), key))
        if queue is None:
            queue = self._queues[(id(model), key)] = _Queue(model, key, signature_name)
        return queue

    @staticmethod
    def _answer(request: _Request) -> tuple[str, dict[str, np.ndarray]]:
        """An answered request's outputs, or its error (its own instance for each caller)."""
        error = request.error
        if isinstance(error, StatusError):  # one instance per caller: each raises its own
            raise StatusError(error.code, error.message) from None
        if error is not None:
            raise error
        return request.name, request.outputs or {}

    def _enqueue(self, queue: _Queue, request: _Request, waited: bool) -> None:
        """Add the request's task(s) to the queue, or raise UNAVAILABLE when it is full;
        `waited`: its caller waits on a thread of its own."""
        limit, max_batches = self.limit, self.config.max_enqueued_batches
        open_batch = queue.batches[-1]
        if self.config.enable_large_batch_splitting:
            capacity = (max_batches - len(queue.batches)) * limit + (limit - open_batch.size)
            if request.rows > capacity:
                raise StatusError(
                    Code.UNAVAILABLE,
                    "The batch scheduling queue to which this task was submitted is full; task "
                    f"size is {request.rows} but scheduling capacity is only {capacity} "
                    f"(num_enqueued_batches={len(queue.batches)}, max_enqueued_batches="
                    f"{max_batches}, open_batch_size={open_batch.size}, "
                    f"max_execution_batch_size={limit})",
                )
            start, room = 0, limit - open_batch.size
            while start < request.rows:
                if room <= 0:
                    room = limit
                stop = min(request.rows, start + room)
                self._add(queue, _Task(request, start, stop), waited)
                start, room = stop, 0
            return
        full = len(queue.batches) >= max_batches
        if open_batch.size + request.rows > limit and open_batch.size > 0 and full:
            raise StatusError(
                Code.UNAVAILABLE,
                "The batch scheduling queue to which this task was submitted is full; "
                f"currently {len(queue.batches)} batches enqueued and max_enqueued_batches "
                f"is {max_batches}",
            )
        self._add(queue, _Task(request, 0, request.rows), waited)

    def _add(self, queue: _Queue, task: _Task, waited: bool) -> None:
        batch = queue.batches[-1]
        if batch.size + task.size > self.limit and batch.size > 0:
            batch = _Batch()  # close the open batch, start a new one
            queue.batches.append(batch)
        if batch.size == 0:
            batch.started = time.monotonic()
        batch.tasks.append(task)
        batch.size += task.size
        batch.waited |= waited
        task.batch = batch
        task.request.pieces.append(task)

    def _wait(self, request: _Request) -> None:
        """Until answered. When its open batch times out, the caller runs it itself if a
        slot is free (else a batch thread does, once one frees). At the deadline, a request
        still (partly) queued leaves the queue with DEADLINE_EXCEEDED (a piece already
        running finishes unobserved)."""
        watch_timeout = self.timeout_s > 0
        while True:
            wake = request.deadline
            if watch_timeout:
                with self._cv:
                    ready_at = self._batch_ready_at(request)
                if ready_at is not None:
                    wake = ready_at if wake is None else min(wake, ready_at)
            if request.done.wait(None if wake is None else max(wake - time.monotonic(), 0)):
                return
            if request.deadline is not None and time.monotonic() >= request.deadline:
                self._expire(request)
                return
            with self._cv:
                claim = None if request.done.is_set() else self._claim()
            if claim is not None:
                self._run(*claim)
            else:
                watch_timeout = False  # no free slot: the batch runs when one frees

    def _batch_ready_at(self, request: _Request) -> float | None:
        """When the batch holding the request's first queued piece may run (None: none)."""
        for task in request.pieces:
            if not task.running and task.batch is not None:
                return task.batch.started + self.timeout_s
        return None

    def _expire(self, request: _Request) -> None:
        with self._cv:
            if request.done.is_set():
                return
            for task in request.pieces:
                if not task.running and task.batch is not None:
                    task.batch.tasks.remove(task)
                    task.batch.size -= task.size
            request.error = StatusError(Code.DEADLINE_EXCEEDED, "Deadline Exceeded")
            _done(request)

    def queued_rows(self) -> int:
        """Rows waiting in every queue (not yet taken by a batch thread)."""
        with self._cv:
            return sum(b.size for q in self._queues.values() for b in q.batches)

    def drain(self, model: BatchingServable, timeout_s: float) -> None:
        """Wait until `model` has nothing queued or running (at most `timeout_s`)."""
        end = time.monotonic() + timeout_s
        with self._cv:
            self._draining += 1
            self._cv.notify_all()  # batch threads: the model's open batches may run now
            while any(q.model is model and not q.empty() for q in self._queues.values()) or (
                self._running.get(id(model), 0)
            ):
                left = end - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(min(left, _IDLE_WAIT_S))
            self._draining -= 1
            for key in [k for k, q in self._queues.items() if q.model is model]:
                for batch in self._queues.pop(key).batches:  # left after the wait: refused
                    for task in batch.tasks:
                        if not task.request.done.is_set():
                            task.request.error = StatusError(
                                Code.UNAVAILABLE, "Servable is being unloaded"
                            )
                            _done(task.request)

    # --- batch threads ---------------------------------------------------------------

    def _start_threads(self) -> None:
        while len(self._threads) < self.config.num_batch_threads:
            thread = threading.Thread(
                target=self._thread_main, name=f"batch_threads_{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _thread_main(self) -> None:
        while True:
            with self._cv:
                claim = self._claim()
                while claim is None:
                    self._cv.wait(self._sleep_s())
                    claim = self._claim()
            self._run(*claim)

    def _claim(self) -> tuple[_Queue, list[_Task]] | None:
        """Under the lock: take a free batch slot and the next schedulable batch, if both
        exist (at most num_batch_threads batches run at once, whoever runs them)."""
        if self._free <= 0:
            return None
        queue, batch = self._next_batch()
        if batch is None:
            return None
        self._free -= 1
        tasks = [t for t in batch.tasks if not t.request.done.is_set()]
        for task in tasks:
            task.running = True
        model_id = id(queue.model)
        self._running[model_id] = self._running.get(model_id, 0) + 1
        if queue.empty() and self._queues.get((model_id, queue.key)) is queue:
            del self._queues[(model_id, queue.key)]  # made again by the next request
        return queue, tasks

    def _run(self, queue: _Queue, tasks: list[_Task]) -> None:
        """Process a claimed batch (outside the lock), then give its slot back."""
        model_id = id(queue.model)
        try:
            if tasks:
                self._process(queue, tasks)
        except Exception as err:  # a bug here must not leave its callers waiting, nor end
            for task in tasks:  # the batch thread: the error is each caller's answer
                self._finish(task, None, "", err)
        finally:
            with self._cv:
                self._free += 1
                self._running[model_id] -= 1
                if not self._running[model_id]:
                    del self._running[model_id]
                if self._draining:
                    self._cv.notify_all()
                elif any(not q.empty() for q in self._queues.values()):
                    self._cv.notify()  # a batch thread, for batches that waited for a slot

    def _next_batch(self) -> tuple[_Queue | None, _Batch | None]:
        """The oldest schedulable batch across all queues (fair between models)."""
        now, best = time.monotonic(), None
        for queue in self._queues.values():
            if queue.ready(now, self.limit, self.timeout_s) and (
                best is None or queue.batches[0].started < best.batches[0].started
            ):
                best = queue
        return (best, best.take()) if best is not None else (None, None)

    def _sleep_s(self) -> float:
        """Until the earliest open batch times out (shortly after, when a caller waiting on
        a thread will run it: this is the backstop), or until notified: of a new request,
        or of a free slot (closed batches wait for one; polling would only burn CPU)."""
        if self._free <= 0:
            return _IDLE_WAIT_S
        wake = [
            q.batches[0].started + self.timeout_s + _BACKSTOP_S * q.batches[0].waited
            for q in self._queues.values()
            if len(q.batches) == 1 and q.batches[0].size
        ]
        if not wake:
            return _IDLE_WAIT_S
        return min(max(min(wake) - time.monotonic(), 0.0), _IDLE_WAIT_S)

    def _process(self, queue: _Queue, tasks: list[_Task]) -> None:
        """One model call for the batch's tasks; its outputs, or its error, to each of them."""
        size = sum(t.size for t in tasks)
        padded = _padded_size(size, self.config.allowed_batch_sizes)
        names = list(tasks[0].request.inputs)
        if len(tasks) == 1 and padded == size:
            merged = {n: tasks[0].value(n) for n in names}
        else:
            merged = {}
            for name in names:
                parts = [t.value(name) for t in tasks]
                if padded > size:  # TF Serving pads with the last task's first row
                    parts.append(np.repeat(parts[-1][:1], padded - size, axis=0))
                merged[name] = np.concatenate(parts)
        deadlines = [t.request.deadline for t in tasks]
        deadline = None if None in deadlines else max(deadlines)
        signature_name, output_filter = queue.signature_name, queue.key[1]
        try:
            name, outputs = queue.model.model.predict(
                signature_name, merged, output_filter, deadline=deadline
            )
        except BaseException as err:  # the shared run's error is every caller's
            for task in tasks:
                self._finish(task, None, "", err)
            return
        if self._observe is not None:
            self._observe(padded, padded - size, len(tasks))
        if len(tasks) == 1 and padded == size:
            self._finish(tasks[0], outputs, name, None)
            return
        if any(v.ndim == 0 or v.shape[0] != padded for v in outputs.values()):
            # Outputs without the batch dimension cannot be split: this shape runs alone
            # from now on, and this batch's requests run one by one.
            queue.model.mark_unbatchable(queue.key)
            for task in tasks:
                self._run_alone(queue, task)
            return
        start = 0
        for task in tasks:
            stop = start + task.size
            self._finish(task, {k: v[start:stop] for k, v in outputs.items()}, name, None)
            start = stop

    def _run_alone(self, queue: _Queue, task: _Task) -> None:
        try:
            name, outputs = queue.model.model.predict(
                queue.signature_name,
                {n: task.value(n) for n in task.request.inputs},
                queue.key[1],
                deadline=task.request.deadline,
            )
        except BaseException as err:
            self._finish(task, None, "", err)
        else:
            self._finish(task, outputs, name, None)

    def _finish(
        self,
        task: _Task,
        outputs: dict[str, np.ndarray] | None,
        name: str,
        error: BaseException | None,
    ) -> None:
        """Record one task's result; the request is answered when its last piece is."""
        request = task.request
        with self._cv:
            if request.done.is_set():
                return  # timed out, or an earlier piece failed
            if error is not None:
                request.error = error
                _done(request)
                return
            task.outputs, request.name = outputs, name
            if any(p.outputs is None for p in request.pieces):
                return
            pieces = request.pieces
            if len(pieces) == 1:
                request.outputs = outputs
            else:
                request.outputs = {
                    k: np.concatenate([p.outputs[k] for p in pieces]) for k in outputs
                }
            _done(request)


def _done(request: _Request) -> None:
    """Under the scheduler's lock: the request is answered; its caller learns it."""
    request.done.set()
    if request.on_done is not None:
        request.on_done()


def _wake(loop: asyncio.AbstractEventLoop, answered: asyncio.Future) -> None:
    """From a batch thread: settle the caller's future on its loop. A loop already closed
    (server shutdown) has no one waiting, and must not break the rest of the batch."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_settle, answered)


def _settle(answered: asyncio.Future) -> None:
    if not answered.done():
        answered.set_result(None)


def _padded_size(size: int, allowed: Sequence[int]) -> int:
    """The smallest allowed batch size that holds `size` rows (`size` if none is set or
    none is large enough, as TF Serving's RoundToLowestAllowedBatchSize)."""
    if not allowed:
        return size
    index = bisect.bisect_left(allowed, size)
    return allowed[index] if index < len(allowed) else size
