"""Latency, measured apart from the replay: a uniform sample of logged requests, each sent
alone exactly as logged to the target and to a reference (by default the version that
answered it in the log), alternating which goes first, so both are measured side by side
under the same conditions; p50 and p99 of each, and how many the reference still answers
as logged."""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from fmnist.rollout.answers import NotComparable, Rows, Tally, response_rows
from fmnist.rollout.endpoint import Endpoint, NotOverThisApi
from fmnist.rollout.logs import LoggedCall
from fmnist.serving.client import ServingError


@dataclass(frozen=True)
class Target:
    """What replay sends to: a version, a label, or (both None) whatever serves."""

    version: int | None = None
    label: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"version {self.version}"
        return f"label {self.label}" if self.label else "latest"


class Reservoir:
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


def measure_latency(
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
        named = [v for v in version_counts(versions) if v != "unknown"]
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


def version_counts(counts: Counter) -> dict[str, int]:
    """{"1": n, "2": n, "unknown": n}: versions in order, then answers that did not say."""
    named = {str(v): counts[v] for v in sorted(v for v in counts if v is not None)}
    return named | ({"unknown": counts[None]} if counts.get(None) else {})
