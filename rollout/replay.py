"""Replay: send logged requests to a TF Serving endpoint and compare every answer with the
logged one.

Logged Predict requests of the same signature and input shapes are sent together, up to
`batch_rows` examples per call, and their answers split back (a classifier answers each
example alone, so this changes no answer, and replay runs at `fmnist parity`'s pace); a
batch that fails is sent again one request at a time, so an error is charged to the request
that caused it. Other methods are sent one by one, as logged. Latency is measured apart,
on a sample of requests sent one at a time exactly as logged, to the target and to the
version that answered them in the log, alternately, so the two are measured side by side.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fmnist.errors import EXIT_OK, EXIT_PARITY_FAILED, UserError
from fmnist.rollout.answers import NotComparable, Rows, Tally, response_rows
from fmnist.rollout.batching import Batch, member
from fmnist.rollout.endpoint import FATAL_CODES, Endpoint, NotOverThisApi
from fmnist.rollout.logs import LoggedCall, RequestLog
from fmnist.serving.client import ServingError

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
class Target:
    """What replay sends to: a version, a label, or (both None) whatever serves."""

    version: int | None = None
    label: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"version {self.version}"
        return f"label {self.label}" if self.label else "latest"


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
    target: Target = Target(),
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
    sampler = _Reservoir(options.latency_samples, options.seed)
    try:
        for call in log:
            sampler.offer(call)
            run.take(call)
        run.flush()
    finally:
        run.close()
    replayed_at = time.perf_counter()
    latency = _measure_latency(sampler.items, endpoint, target, reference) if sampler.items else {}
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
        logged_versions=_version_counts(log.logged_versions),
        answered_versions=_version_counts(run.answered_versions),
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


class _Reservoir:
    """A uniform sample of at most `size` items of a stream of unknown length."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.items, self.seen = size, [], 0
        self._random = random.Random(seed)

    def offer(self, item: Any) -> None:
        self.seen += 1
        if len(self.items) < self.size:
            self.items.append(item)
        elif self.size:
            slot = self._random.randrange(self.seen)
            if slot < self.size:
                self.items[slot] = item


def _measure_latency(
    samples: list[LoggedCall], endpoint: Endpoint, target: Target, reference: Target | None
) -> dict[str, Any]:
    """Each sampled request sent alone to the target and to the reference (default: the
    version that answered it in the log), alternating which goes first; p50/p99 of each,
    in milliseconds, and how many the reference still answers as logged."""
    timings: dict[str, list[float]] = {"target": [], "logged": []}
    reference_ok, reproduced, note = True, 0, ""
    versions = Counter(call.version for call in samples) if reference is None else Counter()
    for i, call in enumerate(samples):
        order = ["target", "logged"] if i % 2 == 0 else ["logged", "target"]
        for side in order:
            if side == "target":
                pin = {"version": target.version, "label": target.label}
            elif not reference_ok:
                continue
            elif reference is not None:
                pin = {"version": reference.version, "label": reference.label}
            elif call.version is None:
                continue
            else:
                pin = {"version": call.version, "label": None}
            start = time.perf_counter()
            try:
                rows, _ = endpoint.send(call.method, call.request, **pin)
            except ServingError as err:
                if side == "logged" and err.code in ("NOT_FOUND", "FAILED_PRECONDITION"):
                    reference_ok = False
                    note = f"the reference is not served ({' '.join(err.message.split())[:200]})"
                continue
            except (NotComparable, NotOverThisApi):
                continue
            timings[side].append((time.perf_counter() - start) * 1000)
            if side == "logged":
                reproduced += _same_answer(call, rows, endpoint)
    result: dict[str, Any] = {
        "samples": len(samples),
        "target": _percentiles(timings["target"]),
        "logged": _percentiles(timings["logged"]),
    }
    if reference is None:
        named = [v for v in _version_counts(versions) if v != "unknown"]
        result["reference"] = f"logged version {', '.join(named) or 'unknown'}"
    else:
        result["reference"] = str(reference)
    if timings["logged"]:
        result["logged"]["answers_as_logged"] = reproduced
        p99s = result["target"]["p99_ms"], result["logged"]["p99_ms"]
        result["p99_ratio"] = round(p99s[0] / p99s[1], 3) if p99s[1] else None
    elif not note and None in versions:
        note = "the log does not say which version answered"
    if note:
        result["note"] = note
    return result


def _same_answer(call: LoggedCall, rows: list[Rows], endpoint: Endpoint) -> int:
    tally = Tally()
    logged = response_rows(call.method, call.response, endpoint.output, endpoint.quantization)
    for index, part in enumerate(logged):
        tally.add(part, rows[index] if index < len(rows) else None, [call.where] * len(part))
    return int(tally.answers == tally.agreed)


def _percentiles(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    array = np.asarray(values)
    return {
        "n": len(values),
        "p50_ms": round(float(np.percentile(array, 50)), 3),
        "p99_ms": round(float(np.percentile(array, 99)), 3),
    }


def _version_counts(counts: Counter) -> dict[str, int]:
    """{"1": n, "2": n, "unknown": n}: versions in order, then answers that did not say."""
    named = {str(v): counts[v] for v in sorted(v for v in counts if v is not None)}
    return named | ({"unknown": counts[None]} if counts.get(None) else {})


def _named(rows: list[dict[str, Any]], class_names: list[str] | None) -> list[dict[str, Any]]:
    """Per-class rows with a `name` (the class name for a numeric key, when known)."""

    def name(key: str) -> str:
        known = class_names and key.isdigit() and int(key) < len(class_names)
        return class_names[int(key)] if known else key

    for row in rows:
        row["name"] = name(row["class"])
        row["became"] = {name(key): n for key, n in row["became"].items()}
    return rows
