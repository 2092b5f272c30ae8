"""Side-by-side latency of every way the model is served, measured in one run on one machine."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np


def measure(
    name: str, call: Callable[[], Any], *, batch: int, runs: int, warmup: int = 5
) -> dict[str, Any]:
    """Median and p90 wall time of `call()` over `runs` calls after `warmup` calls."""
    for _ in range(warmup):
        call()
    seconds = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        call()
        seconds[i] = time.perf_counter() - start
    p50, p90 = np.percentile(seconds * 1e3, [50, 90])
    return {
        "path": name,
        "batch": batch,
        "runs": runs,
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "images_per_s": batch / float(np.median(seconds)),
    }
