"""TF Serving's shared batch scheduler (shared_batch_scheduler.h) as a library.

Callers queue requests from an event loop (`run`) and wait there, without a thread;
`num_batch_threads` threads each run one batch at a time. A queue belongs to an owner (a
served version) and a request shape; its requests are concatenated along dim 0 into one
call of its `process`, padded up to `allowed_batch_sizes`, and the outputs split back to
each caller. The parameters mean what they mean in TF Serving. No TensorFlow.
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
from dataclasses import dataclass, field

import numpy as np

from fmnist.serving.wire.status import Code, StatusError

Outputs = dict[str, np.ndarray]
# A queue's model call: (merged inputs, deadline) -> (signature used, outputs).
Process = Callable[[Mapping[str, np.ndarray], float | None], tuple[str, Outputs]]
# (rows in the model call incl. padding, padding rows, requests merged) after every batch.
BatchObserver = Callable[[int, int, int], None]
CLOSE_WAIT_S = 60.0  # how long unloading a version waits for its queued batches
_IDLE_WAIT_S = 1.0  # how long an idle batch thread sleeps before re-checking (cv-woken)


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


def check_config(config: BatchingConfig) -> None:
    """ValueError, worded as TF Serving's, for parameters it rejects."""
    for name, least in (
        ("max_batch_size", 1),
        ("batch_timeout_micros", 0),
        ("max_enqueued_batches", 0),
        ("num_batch_threads", 1),
    ):
        value = getattr(config, name)
        if value < least:
            rule = "positive" if least else "non-negative"
            raise ValueError(f"{name} must be {rule}; was {value}")
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
    """The most rows one model call gets."""
    if config.enable_large_batch_splitting and config.max_execution_batch_size is not None:
        return config.max_execution_batch_size
    return config.max_batch_size


@dataclass(eq=False)
class QueuedRequest:
    """One caller's request, its answer (or error) once every piece ran, and its wake-up."""

    inputs: Mapping[str, np.ndarray]
    rows: int
    deadline: float | None
    wake: Callable[[], None]
    answered: bool = False
    name: str = ""
    outputs: Outputs | None = None
    error: BaseException | None = None
    pieces: list[_Piece] = field(default_factory=list)


@dataclass(eq=False)
class _Piece:
    """Rows [start, stop) of a request, as placed in one batch."""

    request: QueuedRequest
    start: int
    stop: int
    batch: _Batch | None = None
    outputs: Outputs | None = None
    running: bool = False

    @property
    def size(self) -> int:
        return self.stop - self.start

    def value(self, name: str) -> np.ndarray:
        value = self.request.inputs[name]
        return value if self.size == self.request.rows else value[self.start : self.stop]


@dataclass(eq=False)
class _Batch:
    pieces: list[_Piece] = field(default_factory=list)
    size: int = 0
    started: float = 0.0  # monotonic time its first piece arrived


class _Queue:
    """Batches of one owner and request shape; the last batch is the open one."""

    def __init__(self, owner: Hashable, key: Hashable, process: Process):
        self.owner, self.key, self.process = owner, key, process
        self.batches: deque[_Batch] = deque([_Batch()])

    def ready(self, now: float, limit: int, timeout_s: float, closing: bool) -> bool:
        """Whether a batch can be taken now (TF Serving's IsOpenBatchSchedulable)."""
        if len(self.batches) > 1:
            return True
        size = self.batches[0].size
        return size > 0 and (size >= limit or now >= self.batches[0].started + timeout_s or closing)

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
        self._queues: dict[tuple[Hashable, Hashable], _Queue] = {}  # by (owner, shape key)
        self._running: dict[Hashable, int] = {}  # owner -> batches being processed
        self._closing: set[Hashable] = set()  # owners being drained: their batches run now
        self._unsplittable: set[tuple[Hashable, Hashable]] = set()  # run alone from now on
        self._threads: list[threading.Thread] = []
        self._draining = 0  # drain() calls waiting

    # --- callers ---------------------------------------------------------------------

    def accepts(self, owner: Hashable, key: Hashable) -> bool:
        """False once this queue's outputs could not be split: its requests run alone."""
        return (owner, key) not in self._unsplittable

    async def run(
        self,
        owner: Hashable,
        key: Hashable,
        process: Process,
        inputs: Mapping[str, np.ndarray],
        rows: int,
        deadline: float | None,
    ) -> tuple[str, Outputs]:
        """Queue a request (`process` runs its queue's batches) and wait on this event loop
        for its outputs; at the deadline, or if the caller goes away, it leaves the queue."""
        if rows > self.config.max_batch_size:
            raise StatusError(
                Code.INVALID_ARGUMENT,
                f"Task size {rows} is larger than maximum input batch size "
                f"{self.config.max_batch_size}",
            )
        loop = asyncio.get_running_loop()
        woken = loop.create_future()
        request = QueuedRequest(inputs, rows, deadline, lambda: _wake(loop, woken))
        with self._cv:
            self._enqueue(self._queue(owner, key, process), request)
            self._cv.notify()
        timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        try:
            await asyncio.wait_for(woken, timeout)
        except asyncio.TimeoutError:
            self._expire(request)
        except asyncio.CancelledError:
            self._expire(request)
            raise
        return _outcome(request)

    def queued_rows(self) -> int:
        """Rows waiting in every queue."""
        with self._cv:
            return sum(b.size for q in self._queues.values() for b in q.batches)

    def drain(self, owner: Hashable, timeout_s: float = CLOSE_WAIT_S) -> None:
        """Run `owner`'s queued batches now and wait (at most `timeout_s`) until it has
        nothing queued or running; what is left is refused."""
        end = time.monotonic() + timeout_s
        with self._cv:
            self._closing.add(owner)
            self._draining += 1
            self._cv.notify_all()
            while self._busy(owner) and time.monotonic() < end:
                self._cv.wait(min(end - time.monotonic(), _IDLE_WAIT_S))
            self._draining -= 1
            unloading = StatusError(Code.UNAVAILABLE, "Servable is being unloaded")
            for key in [k for k in self._queues if k[0] == owner]:
                for batch in self._queues.pop(key).batches:
                    for piece in batch.pieces:
                        _fail(piece.request, unloading)
            self._unsplittable = {k for k in self._unsplittable if k[0] != owner}

    # --- queues, under the lock -------------------------------------------------------------

    def _busy(self, owner: Hashable) -> bool:
        queued = any(q.owner == owner and not q.empty() for q in self._queues.values())
        return queued or bool(self._running.get(owner))

    def _queue(self, owner: Hashable, key: Hashable, process: Process) -> _Queue:
        self._start_threads()
        queue = self._queues.get((owner, key))
        if queue is None:
            queue = self._queues[(owner, key)] = _Queue(owner, key, process)
        return queue

    def _enqueue(self, queue: _Queue, request: QueuedRequest) -> None:
        """Add the request's piece(s) to the queue, or raise UNAVAILABLE when it is full."""
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
            first = limit - open_batch.size or limit  # the open batch's room, then whole ones
            bounds = [0, *range(min(first, request.rows), request.rows, limit), request.rows]
            for start, stop in itertools.pairwise(bounds):
                self._add(queue, _Piece(request, start, stop))
            return
        full = len(queue.batches) >= max_batches
        if open_batch.size + request.rows > limit and open_batch.size > 0 and full:
            raise StatusError(
                Code.UNAVAILABLE,
                "The batch scheduling queue to which this task was submitted is full; "
                f"currently {len(queue.batches)} batches enqueued and max_enqueued_batches "
                f"is {max_batches}",
            )
        self._add(queue, _Piece(request, 0, request.rows))

    def _add(self, queue: _Queue, piece: _Piece) -> None:
        batch = queue.batches[-1]
        if batch.size + piece.size > self.limit and batch.size > 0:
            batch = _Batch()  # close the open batch, start a new one
            queue.batches.append(batch)
        if batch.size == 0:
            batch.started = time.monotonic()
        batch.pieces.append(piece)
        batch.size += piece.size
        piece.batch = batch
        piece.request.pieces.append(piece)

    def _expire(self, request: QueuedRequest) -> None:
        """DEADLINE_EXCEEDED for a request still (partly) queued."""
        with self._cv:
            if request.answered:
                return
            for piece in request.pieces:
                if not piece.running and piece.batch is not None:
                    piece.batch.pieces.remove(piece)
                    piece.batch.size -= piece.size
            _fail(request, StatusError(Code.DEADLINE_EXCEEDED, "Deadline Exceeded"))

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

    def _claim(self) -> tuple[_Queue, list[_Piece]] | None:
        """Under the lock: the oldest schedulable batch of all queues, its pieces running."""
        now, best = time.monotonic(), None
        for queue in self._queues.values():
            closing = queue.owner in self._closing
            if queue.ready(now, self.limit, self.timeout_s, closing) and (
                best is None or queue.batches[0].started < best.batches[0].started
            ):
                best = queue
        if best is None:
            return None
        pieces = [p for p in best.take().pieces if not p.request.answered]
        for piece in pieces:
            piece.running = True
        self._running[best.owner] = self._running.get(best.owner, 0) + 1
        if best.empty() and self._queues.get((best.owner, best.key)) is best:
            del self._queues[(best.owner, best.key)]  # made again by the next request
        return best, pieces

    def _sleep_s(self) -> float:
        """Until the earliest open batch times out, or until notified of a new request."""
        wake = [
            q.batches[0].started + self.timeout_s
            for q in self._queues.values()
            if len(q.batches) == 1 and q.batches[0].size
        ]
        if not wake:
            return _IDLE_WAIT_S
        return min(max(min(wake) - time.monotonic(), 0.0), _IDLE_WAIT_S)

    def _run(self, queue: _Queue, pieces: list[_Piece]) -> None:
        """Process a claimed batch; a bug here is its callers' answer, not a lost thread."""
        try:
            if pieces:
                self._process(queue, pieces)
        except Exception as err:
            self._fail(pieces, err)
        finally:
            with self._cv:
                self._running[queue.owner] -= 1
                if not self._running[queue.owner]:
                    del self._running[queue.owner]
                if self._draining:
                    self._cv.notify_all()

    def _process(self, queue: _Queue, pieces: list[_Piece]) -> None:
        """One model call for the batch's pieces; its outputs, or its error, to each."""
        size = sum(p.size for p in pieces)
        padded = _padded_size(size, self.config.allowed_batch_sizes)
        deadlines = [p.request.deadline for p in pieces]
        try:
            name, outputs = queue.process(
                _merged(pieces, padded), None if None in deadlines else max(deadlines)
            )
        except BaseException as err:  # the shared run's error is every caller's
            return self._fail(pieces, err)
        if self._observe is not None:
            self._observe(padded, padded - size, len(pieces))
        if len(pieces) == 1 and padded == size:
            self._finish(pieces[0], outputs, name)
        elif any(v.ndim == 0 or v.shape[0] != padded for v in outputs.values()):
            # Outputs without the batch dimension cannot be split: this queue runs alone
            # from now on, and this batch's requests run one by one.
            self._unsplittable.add((queue.owner, queue.key))
            for piece in pieces:
                self._run_alone(queue, piece)
        else:
            start = 0
            for piece in pieces:
                stop = start + piece.size
                self._finish(piece, {k: v[start:stop] for k, v in outputs.items()}, name)
                start = stop

    def _run_alone(self, queue: _Queue, piece: _Piece) -> None:
        inputs = {n: piece.value(n) for n in piece.request.inputs}
        try:
            name, outputs = queue.process(inputs, piece.request.deadline)
        except BaseException as err:
            return self._fail([piece], err)
        self._finish(piece, outputs, name)

    def _fail(self, pieces: list[_Piece], error: BaseException) -> None:
        """The pieces' requests answered with `error` (unless answered already)."""
        with self._cv:
            for piece in pieces:
                _fail(piece.request, error)

    def _finish(self, piece: _Piece, outputs: Outputs, name: str) -> None:
        """Record one piece's outputs; the request is answered when its last piece is."""
        request = piece.request
        with self._cv:
            if request.answered:
                return  # timed out, or an earlier piece failed
            piece.outputs, request.name = outputs, name
            if any(p.outputs is None for p in request.pieces):
                return
            if len(request.pieces) == 1:
                request.outputs = outputs
            else:
                request.outputs = {
                    k: np.concatenate([p.outputs[k] for p in request.pieces]) for k in outputs
                }
            _done(request)


def _merged(pieces: list[_Piece], padded: int) -> dict[str, np.ndarray]:
    """The pieces' inputs concatenated, padded with copies of a row (as TF Serving pads)."""
    names = list(pieces[0].request.inputs)
    size = sum(p.size for p in pieces)
    if len(pieces) == 1 and padded == size:
        return {n: pieces[0].value(n) for n in names}
    merged = {}
    for name in names:
        parts = [p.value(name) for p in pieces]
        if padded > size:
            parts.append(np.repeat(parts[-1][:1], padded - size, axis=0))
        merged[name] = np.concatenate(parts)
    return merged


def _done(request: QueuedRequest) -> None:
    """Under the scheduler's lock: the request is answered; its caller learns it."""
    request.answered = True
    request.wake()


def _fail(request: QueuedRequest, error: BaseException) -> None:
    """Under the scheduler's lock: answer `request` with `error`, unless it is answered."""
    if not request.answered:
        request.error = error
        _done(request)


def _outcome(request: QueuedRequest) -> tuple[str, Outputs]:
    error = request.error
    if isinstance(error, StatusError):  # one instance per caller: each raises its own
        raise StatusError(error.code, error.message) from error.__cause__
    if error is not None:
        raise error
    return request.name, request.outputs or {}


def _wake(loop: asyncio.AbstractEventLoop, woken: asyncio.Future) -> None:
    """From a batch thread: settle the caller's future (a closed loop has no one waiting)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_settle, woken)


def _settle(woken: asyncio.Future) -> None:
    if not woken.done():
        woken.set_result(None)


def _padded_size(size: int, allowed: Sequence[int]) -> int:
    """TF Serving's RoundToLowestAllowedBatchSize."""
    if not allowed:
        return size
    index = bisect.bisect_left(allowed, size)
    return allowed[index] if index < len(allowed) else size
