"""Replay: send logged requests to a TF Serving endpoint and compare every answer with the
logged one.

Logged Predict requests of the same signature and input shapes are sent together, up to
`batch_rows` examples per call, and their answers split back (a classifier answers each
example alone, so this changes no answer, and replay runs at `fmnist parity`'s pace); a
batch that fails is sent again one request at a time, so an error is charged to the request
that caused it. Other methods are sent one by one, as logged. Latency is measured apart
(`latency.py`).
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fmnist.errors import EXIT_OK, EXIT_PARITY_FAILED, UserError
from fmnist.rollout.answers import NotComparable, Tally, response_rows
from fmnist.rollout.batching import Batch, member
from fmnist.rollout.endpoint import FATAL_CODES, Endpoint, NotOverThisApi
from fmnist.rollout.latency import Reservoir, Target, measure_latency, version_counts
from fmnist.rollout.logs import LoggedCall, RequestLog
from fmnist.serving.client import ServingError

__all__ = ["ReplayOptions", "ReplayResult", "ReplayTolerance", "Target", "judge", "replay"]

NOT_COMPARABLE = "not_comparable"  # the logged answer holds nothing to compare
NOT_OVER_THIS_API = "not_over_this_api"  # MultiInference over REST


@dataclass(frozen=True)
class ReplayTolerance:
    """A replay passes if at least `min_agreement` of the answers agree with the logged
    ones, every logged class with at least `min_class_support` answers keeps at least
    `min_class_agreement` of them, at most `max_errors` requests fail, and (when set) no
    class score moves more than `max_score_diff`."""

    min_agreement: float = 0.99
    min_class_agreement: float = 0.95
    min_class_support: int = 30
    max_errors: int = 0
    max_score_diff: float | None = None

    def __post_init__(self) -> None:
        for name in ("min_agreement", "min_class_agreement"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UserError(f"--{name.replace('_', '-')} must be between 0 and 1")
        if self.min_class_support < 1 or self.max_errors < 0:
            raise UserError("--min-class-support must be >= 1 and --max-errors >= 0")
        if self.max_score_diff is not None and not self.max_score_diff >= 0.0:
            raise UserError("--max-score-diff must be >= 0")


@dataclass(frozen=True)
class ReplayOptions:
    batch_rows: int = 256  # examples per coalesced Predict call
    latency_samples: int = 200  # requests timed one by one, side by side; 0: none
    value_rtol: float = 1e-3
    seed: int = 0


@dataclass
class ReplayResult:
    """Everything a replay measured, for a table, Markdown or JSON."""

    endpoint: str
    api: str
    model: str
    target: str
    files: int
    logged_calls: int
    replayed: int
    answers: int
    agreed: int
    per_class: list[dict[str, Any]]
    max_score_diff: float
    max_score_diff_at: str
    mean_score_diff: float
    values: int
    max_value_diff: float
    skipped: dict[str, int]
    notes: list[str]
    other_models: dict[str, int]
    errors: dict[str, int]
    first_errors: dict[str, str]
    logged_versions: dict[str, int]
    answered_versions: dict[str, int]
    latency: dict[str, Any]
    replay_time_s: float  # reading, sending and comparing every logged call
    wall_time_s: float  # and the latency sample
    tolerance: ReplayTolerance
    passed: bool = False
    failures: list[str] = field(default_factory=list)

    @property
    def agreement(self) -> float:
        return self.agreed / self.answers if self.answers else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.passed else EXIT_PARITY_FAILED

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "tolerance"}
        data["agreement"] = self.agreement
        data["tolerance"] = self.tolerance.__dict__
        data["requests_per_s"] = self.requests_per_s
        return data

    @property
    def requests_per_s(self) -> float:
        """Logged calls replayed per second (the latency sample apart)."""
        return round(self.replayed / self.replay_time_s, 1) if self.replay_time_s else 0.0


def replay(
    log: RequestLog,
    endpoint: Endpoint,
    target: Target = Target(),  # noqa: B008 (frozen: a shared default is safe)
    *,
    tolerance: ReplayTolerance = ReplayTolerance(),
    options: ReplayOptions = ReplayOptions(),
    class_names: list[str] | None = None,
    reference: Target | None = None,
) -> ReplayResult:
    """Replay `log` against `endpoint`'s `target` and judge the answers by `tolerance`.
    Latency is measured side by side with `reference` (default: the version that answered
    each request in the log).

    Raises a UserError (exit 2) when it cannot check: nothing replayable in the log, or the
    target is not there (no server, no such model, version or label)."""
    run = _Run(endpoint, target, options)
    started = time.perf_counter()
    sampler = Reservoir(options.latency_samples, options.seed)
    try:
        for call in log:
            sampler.offer(call)
            run.take(call)
        run.flush()
    finally:
        run.close()
    replayed_at = time.perf_counter()
    latency = measure_latency(sampler.items, endpoint, target, reference) if sampler.items else {}
    seconds = time.perf_counter() - started
    if run.logged_calls == 0:
        raise UserError(log.nothing_to_replay())
    tally = run.tally
    if tally.answers == 0 and not run.errors:
        reasons = "; ".join(log.stats.notes[-3:] + run.notes[:3]) or "no comparable answers"
        raise UserError(f"no logged answer could be compared ({reasons})")
    result = ReplayResult(
        endpoint=endpoint.address,
        api=endpoint.api,
        model=endpoint.model_name,
        target=str(target),
        files=log.stats.files,
        logged_calls=run.logged_calls,
        replayed=run.replayed,
        answers=tally.answers,
        agreed=tally.agreed,
        per_class=_named(tally.per_class(), class_names),
        max_score_diff=tally.max_score_diff,
        max_score_diff_at=tally.max_score_diff_at,
        mean_score_diff=tally.score_diff_sum / max(tally.score_diffs, 1),
        values=tally.values,
        max_value_diff=tally.max_value_diff,
        skipped=dict(sorted((log.stats.skipped + run.skipped).items())),
        notes=log.stats.notes + run.notes,
        other_models=dict(log.other_models),
        errors=dict(run.errors),
        first_errors=run.first_errors,
        logged_versions=version_counts(log.logged_versions),
        answered_versions=version_counts(run.answered_versions),
        latency=latency,
        replay_time_s=round(replayed_at - started, 3),
        wall_time_s=round(seconds, 3),
        tolerance=tolerance,
    )
    result.failures = judge(result, tolerance)
    result.passed = not result.failures
    return result


def judge(result: ReplayResult, tolerance: ReplayTolerance) -> list[str]:
    """What the replay failed, one line each (none: it passed)."""
    failures = []
    if result.agreement < tolerance.min_agreement - 1e-12:
        failures.append(
            f"agreement with the logged answers {result.agreement:.4f} is below "
            f"{tolerance.min_agreement:.4f}"
        )
    for row in result.per_class:
        if row["logged"] >= tolerance.min_class_support and (
            row["agreement"] < tolerance.min_class_agreement - 1e-12
        ):
            failures.append(
                f"class {row['name']!r}: {row['agreement']:.4f} of its {row['logged']} logged "
                f"answers kept, below {tolerance.min_class_agreement:.4f}"
            )
    if result.error_count > tolerance.max_errors:
        codes = ", ".join(f"{code} {n}" for code, n in sorted(result.errors.items()))
        failures.append(
            f"{result.error_count} requests failed ({codes}), more than {tolerance.max_errors}"
        )
    if tolerance.max_score_diff is not None and result.max_score_diff > tolerance.max_score_diff:
        failures.append(
            f"a class score moved by {result.max_score_diff:.4g} (at {result.max_score_diff_at}), "
            f"more than {tolerance.max_score_diff:g}"
        )
    return failures


class _Run:
    """One replay pass: batches Predict calls, sends, tallies; state lives here.

    One batch is in flight on a worker thread while this thread reads and prepares the next
    (a blocking gRPC or HTTP call releases the GIL), so the client's work overlaps the
    server's; answers are tallied on this thread only."""

    def __init__(self, endpoint: Endpoint, target: Target, options: ReplayOptions) -> None:
        self.endpoint, self.target, self.options = endpoint, target, options
        self.tally = Tally(value_rtol=options.value_rtol)
        self.logged_calls = 0
        self.replayed = 0
        self.skipped: Counter[str] = Counter()
        self.notes: list[str] = []
        self.errors: Counter[str] = Counter()
        self.first_errors: dict[str, str] = {}
        self.answered_versions: Counter[int | None] = Counter()
        self._pending: dict[tuple, Batch] = {}
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replay")
        self._in_flight: tuple[Future, Batch] | None = None

    def take(self, call: LoggedCall) -> None:
        self.logged_calls += 1
        if call.method != "Predict" or self.options.batch_rows <= 1:
            self._send_alone(call)
            return
        try:
            item = member(call, self.endpoint.output)
        except NotComparable as err:
            self._skip(NOT_COMPARABLE, f"{call.where}: {err}")
            return
        if item is None:
            self._send_alone(call)
            return
        batch = self._pending.get(item.key)
        if batch is not None and batch.rows + item.rows > self.options.batch_rows:
            self._send_batch(self._pending.pop(item.key))
            batch = None
        if batch is None:
            batch = self._pending[item.key] = Batch()
        batch.add(item)
        if len(self._pending) > 16:  # many shapes at once: bound what waits
            self._send_batch(self._pending.pop(next(iter(self._pending))))

    def flush(self) -> None:
        while self._pending:
            self._send_batch(self._pending.pop(next(iter(self._pending))))
        self._collect()

    def close(self) -> None:
        self._sender.shutdown(wait=True)

    def _send_batch(self, batch: Batch) -> None:
        """Send `batch` on the worker, after collecting the one in flight."""
        if len(batch.members) == 1:
            self._send_alone(batch.first.call)
            return
        inputs = batch.inputs()
        self._collect()
        future = self._sender.submit(
            self.endpoint.predict,
            inputs,
            batch.first.signature,
            **self._pin(),
            dtypes=None if self.endpoint.grpc else batch.dtypes(),
        )
        self._in_flight = (future, batch)

    def _collect(self) -> None:
        """Wait for the batch in flight and tally its answers."""
        if self._in_flight is None:
            return
        future, batch = self._in_flight
        self._in_flight = None
        try:
            replayed, answered = future.result()
        except (ServingError, NotComparable):
            for item in batch.members:  # find which request it was
                self._send_alone(item.call)
            return
        self.tally.add(batch.logged(self.endpoint.quantization), replayed, batch.wheres())
        self.replayed += len(batch.members)
        self.answered_versions[answered] += len(batch.members)

    def _send_alone(self, call: LoggedCall) -> None:
        try:
            logged = response_rows(
                call.method, call.response, self.endpoint.output, self.endpoint.quantization
            )
        except NotComparable as err:
            self._skip(NOT_COMPARABLE, f"{call.where}: {err}")
            return
        try:
            replayed, answered = self.endpoint.send(call.method, call.request, **self._pin())
        except NotOverThisApi as err:
            self._skip(NOT_OVER_THIS_API, f"{call.where}: {err}")
            return
        except NotComparable as err:
            replayed, answered = None, None
            self._note(f"{call.where}: the replayed answer: {err}")
        except ServingError as err:
            if err.code in FATAL_CODES:
                raise
            self.errors[err.code] += 1
            self.first_errors.setdefault(err.code, f"{call.where}: {err.message}"[:300])
            self.replayed += 1
            return
        self.replayed += 1
        self.answered_versions[answered] += 1
        for index, rows in enumerate(logged):
            other = replayed[index] if replayed and index < len(replayed) else None
            self.tally.add(rows, other, [call.where] * len(rows))

    def _pin(self) -> dict[str, Any]:
        return {"version": self.target.version, "label": self.target.label}

    def _skip(self, reason: str, note: str) -> None:
        self.skipped[reason] += 1
        self._note(note)

    def _note(self, note: str) -> None:
        if len(self.notes) < 20:
            self.notes.append(" ".join(note.split()))


def _named(rows: list[dict[str, Any]], class_names: list[str] | None) -> list[dict[str, Any]]:
    """Per-class rows with a `name` (the class name for a numeric key, when known)."""

    def name(key: str) -> str:
        known = class_names and key.isdigit() and int(key) < len(class_names)
        return class_names[int(key)] if known else key

    for row in rows:
        row["name"] = name(row["class"])
        row["became"] = {name(key): n for key, n in row["became"].items()}
    return rows
