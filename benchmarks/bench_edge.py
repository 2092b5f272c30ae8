"""Edge runner benchmark: overhead over bare invoke(), int8 vs float, runtimes, parity time.

    python benchmarks/bench_edge.py BUNDLE [--python OTHER_PYTHON ...] [--out runs/bench/edge]

Measured side by side in one process per runtime, interleaved, medians of R runs:
  * batch-1 latency of `Classifier.predict_proba` (the edge runner: conversion, resize
    check, dequantization) against bare `set_tensor/invoke/get_tensor` on the same
    interpreter, for the int8 and the float32 model;
  * the int8 parity check over the bundle's test images (wall time).
`--python` repeats the measurement in another environment (e.g. tflite-runtime 2.14 with
numpy<2) and merges the rows. TF-free: runs wherever the edge package runs.
Targets: runner overhead <= 5% at batch 1 on the default model (issue 48; issue 6 set 10%);
int8 parity < 3 s with ai-edge-litert.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from fmnist.edge.classifier import Classifier, resolve_model
from fmnist.edge.parity import run_parity
from fmnist.edge.runtime import select_runtime


def _median_ms(samples: list[float]) -> float:
    return float(np.median(samples) * 1e3)


def _runner_vs_bare(classifier: Classifier, runs: int) -> dict:
    """Interleaved batch-1 timings of the runner and of bare invoke() on one interpreter."""
    shape = classifier.contract.shape
    image = np.random.default_rng(0).integers(0, 256, (1, *shape), dtype=np.uint8)
    interpreter = classifier.interpreter
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    raw = classifier.to_input(image).reshape(inp["shape"])

    def bare() -> None:
        interpreter.set_tensor(inp["index"], raw)
        interpreter.invoke()
        interpreter.get_tensor(out["index"])

    for _ in range(50):
        bare()
        classifier.predict_proba(image)
    bare_s, runner_s = [], []
    for _ in range(runs):  # interleaved, so drift on a noisy machine hits both alike
        t0 = time.perf_counter()
        bare()
        t1 = time.perf_counter()
        classifier.predict_proba(image)
        t2 = time.perf_counter()
        bare_s.append(t1 - t0)
        runner_s.append(t2 - t1)
    batch = np.random.default_rng(1).integers(0, 256, (64, *shape), dtype=np.uint8)
    classifier.predict_proba(batch)
    b64 = []
    for _ in range(max(10, runs // 20)):
        t0 = time.perf_counter()
        classifier.predict_proba(batch)
        b64.append(time.perf_counter() - t0)
    return {
        "bare_invoke_p50_ms": _median_ms(bare_s),
        "runner_p50_ms": _median_ms(runner_s),
        "runner_overhead": _median_ms(runner_s) / _median_ms(bare_s) - 1,
        "batch64_p50_ms": _median_ms(b64),
        "batch64_images_per_s": 64 / float(np.median(b64)),
    }


def measure(bundle: Path, data_dir: Path | None, runs: int, threads: int | None) -> list[dict]:
    """Rows for the runtime this interpreter selects."""
    runtime = select_runtime()
    rows = []
    for kind in ("int8", "float32"):
        resolved = resolve_model(bundle, kind)
        classifier = Classifier(
            resolved.path, runtime=runtime, num_threads=threads, contract=resolved.contract
        )
        rows.append({"runtime": str(runtime), "model": kind, **_runner_vs_bare(classifier, runs)})
    if data_dir is not None:
        start = time.perf_counter()
        result = run_parity(bundle, data_dir, runtime=runtime, num_threads=threads)
        rows[0]["parity_10k_s"] = time.perf_counter() - start
        rows[0]["parity_passed"] = result.passed
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("FMNIST_DATA_DIR"))
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--python", action="append", default=[], help="another environment")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/edge"))
    parser.add_argument("--rows-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    rows = measure(args.bundle, args.data_dir, args.runs, args.threads)
    if args.rows_only:
        print(json.dumps(rows))
        return
    for python in args.python:
        command = [python, __file__, str(args.bundle), "--runs", str(args.runs), "--rows-only"]
        if args.data_dir:
            command += ["--data-dir", str(args.data_dir)]
        if args.threads:
            command += ["--threads", str(args.threads)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        rows += json.loads(done.stdout.strip().splitlines()[-1])

    header = f"{'runtime':<22} {'model':<8} {'bare p50':>9} {'runner p50':>11} {'overhead':>9}"
    header += f" {'b64 p50':>9} {'b64 img/s':>10} {'parity 10k':>11}"
    print(header)
    for r in rows:
        parity = f"{r['parity_10k_s']:.2f} s" if "parity_10k_s" in r else ""
        print(
            f"{r['runtime']:<22} {r['model']:<8} {r['bare_invoke_p50_ms']:>7.4f}ms "
            f"{r['runner_p50_ms']:>9.4f}ms {r['runner_overhead']:>+8.1%} "
            f"{r['batch64_p50_ms']:>7.3f}ms {r['batch64_images_per_s']:>10.0f} {parity:>11}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_edge.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {args.out / 'bench_edge.json'}")


if __name__ == "__main__":
    sys.exit(main())
