"""`fmnist-edge bench`: load time, first inference and steady-state latency of a TFLite model.

In the spirit of TFLite's benchmark_model: init time, first inference, p50/p90/p99 latency
over R runs of batch B, throughput and the process's peak memory.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fmnist.contract import InputContract
from fmnist.edge.classifier import Classifier, probe_model, read_model
from fmnist.edge.runtime import Runtime


@dataclass
class BenchResult:
    model: str
    runtime: str
    threads: int | None
    batch: int
    runs: int
    init_ms: float
    first_inference_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    images_per_s: float
    peak_rss_mb: float

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        rows = [
            ("model", self.model),
            ("runtime", self.runtime),
            ("threads / batch / runs", f"{self.threads or 'default'} / {self.batch} / {self.runs}"),
            ("init", f"{self.init_ms:.2f} ms"),
            ("first inference", f"{self.first_inference_ms:.3f} ms"),
            (
                "latency p50 / p90 / p99",
                f"{self.p50_ms:.3f} / {self.p90_ms:.3f} / {self.p99_ms:.3f} ms",
            ),
            ("throughput", f"{self.images_per_s:,.0f} images/s"),
            ("peak memory (RSS)", f"{self.peak_rss_mb:.1f} MB"),
        ]
        width = max(len(key) for key, _ in rows)
        return "\n".join(f"{key:<{width}}  {value}" for key, value in rows)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def benchmark(
    model_path: str | os.PathLike,
    *,
    runtime: Runtime,
    threads: int | None = None,
    runs: int = 200,
    batch: int = 1,
    warmup: int = 10,
    seed: int = 0,
    probe: bool = False,
    contract: InputContract | None = None,
) -> BenchResult:
    """Time the full classify path (quantize, invoke, dequantize) on random images.

    `probe`: try the model in a child process first (see Classifier), outside the timing;
    `contract`: a bundle's (else the model's own input tensor says the image shape)."""
    if probe:
        path = Path(model_path)
        probe_model(read_model(path), path, runtime)
    start = time.perf_counter()
    classifier = Classifier(model_path, num_threads=threads, runtime=runtime, contract=contract)
    init_ms = (time.perf_counter() - start) * 1e3
    shape = (batch, *classifier.contract.shape)
    images = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    start = time.perf_counter()
    classifier.predict_proba(images, batch_size=batch)
    first_ms = (time.perf_counter() - start) * 1e3
    for _ in range(warmup):
        classifier.predict_proba(images, batch_size=batch)
    latencies = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        classifier.predict_proba(images, batch_size=batch)
        latencies[i] = time.perf_counter() - start
    latencies *= 1e3
    p50, p90, p99 = np.percentile(latencies, [50, 90, 99])
    return BenchResult(
        model=str(model_path),
        runtime=str(runtime),
        threads=threads,
        batch=batch,
        runs=runs,
        init_ms=init_ms,
        first_inference_ms=first_ms,
        p50_ms=float(p50),
        p90_ms=float(p90),
        p99_ms=float(p99),
        mean_ms=float(latencies.mean()),
        images_per_s=batch / (float(latencies.mean()) / 1e3),
        peak_rss_mb=peak_rss_mb(),
    )
