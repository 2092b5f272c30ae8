"""Serving speed against a real `fmnist serve`, loaded by C load generators (h2load for gRPC,
wrk for REST) so the client's CPU hardly counts; issue 43's targets, checked in one run.

    python benchmarks/bench_serving_speed.py --bundle MODELS/fashion_mnist/1 --data-dir D
        [--seconds 10] [--rounds 2] [--baseline-pythonpath DIR] [--out OUT.json]
        [--only NAME ...]
    python benchmarks/bench_serving_speed.py --merge A.json B.json [--out OUT.json]

The bundle is an exported version (its SavedModel and its int8 model.tflite); the load is
batch-1 requests of one real test image. Each configuration in CONFIGURATIONS gets a fresh
server, measured for:
  * gRPC Predict under 16 concurrent streams (one connection; four connections of four
    streams for the multi-process server, whose processes each take whole connections):
    requests/s, server CPU per request (all its processes), mean batch size;
  * REST :predict (row format), 16 wrk connections: requests/s, server CPU per request;
  * gRPC and REST p50 latency with one request at a time (h2load/wrk, one stream);
and one bare LiteRT interpreter on one thread gives the invokes/s of the same model.tflite.
With `--baseline-pythonpath` (a directory put first on the server's PYTHONPATH, holding an
older `fmnist` package, e.g. a checkout's symlink farm), the configurations that an older
server understands are measured on it too, alternating (`--all-on-baseline`: every one, for
a baseline that has every flag). Medians over `--rounds`; then each configuration's ratios
to the baseline's (issue 49: none more than 5% slower, 1-stream p50 no worse).
`--only NAME` measures that configuration only (`--only 'TFLite*'`: those whose names start
with `TFLite`), so that a long run fits several quiet windows; `--merge` reports the
summaries of such runs together.
Targets (issue 43): batching >= 2.5x the same SavedModel server without it; TFLite over
gRPC >= 0.25 of the bare interpreter; REST CPU per request <= half of the baseline's;
1-stream p50 no worse than the baseline's (within 5%).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from loadgen import cpu_seconds, grpc_frame, h2load, server_pids, wrk

from fmnist import dataset
from fmnist.serving.client import GrpcClient
from fmnist.serving.server.process import ServerProcess, start_server
from fmnist.serving.wire import messages as pb
from fmnist.serving.wire.tensor_proto import to_tensor_proto

MODEL = "fashion_mnist"
PREDICT = f"{pb.PREDICTION_SERVICE}/Predict"
MONITORING = 'prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }'
# The issue's batching parameters, and the best found for this model on 2 cores with 16
# streams: one batch thread (the other core serves the API), batches of 8 so that one fills
# while the other runs, a 2 ms timeout (a lone request waits it out, as in TF Serving).
ISSUE_BATCHING = (
    "max_batch_size { value: 32 } batch_timeout_micros { value: 1000 } "
    "num_batch_threads { value: 2 } max_enqueued_batches { value: 100 }"
)
TUNED_BATCHING = (
    "max_batch_size { value: 8 } batch_timeout_micros { value: 2000 } "
    "num_batch_threads { value: 1 } max_enqueued_batches { value: 100 }"
)
ONE_OP_THREAD = ["--tensorflow_intra_op_parallelism", "1", "--tensorflow_inter_op_parallelism", "1"]
TFLITE = ["--prefer_tflite_model"]


@dataclass(frozen=True)
class Configuration:
    flags: list[str] = field(default_factory=list)
    batching: str | None = None  # batching parameters (text format): --enable_batching
    connections: int = 1  # gRPC connections sharing the 16 streams
    on_baseline: bool = True  # an older server understands these flags


CONFIGURATIONS = {
    "SavedModel": Configuration(),
    "SavedModel, batching": Configuration(batching=ISSUE_BATCHING),
    "SavedModel, 1 op thread": Configuration(ONE_OP_THREAD, on_baseline=False),
    "SavedModel, 1 op thread, batching": Configuration(
        ONE_OP_THREAD, TUNED_BATCHING, on_baseline=False
    ),
    "TFLite int8": Configuration(TFLITE),
    "TFLite int8, batching": Configuration(TFLITE, ISSUE_BATCHING),
    "TFLite int8, 2 processes": Configuration(
        [*TFLITE, "--server_processes", "2"], connections=4, on_baseline=False
    ),
    "TFLite int8, 2 processes, batching": Configuration(
        [*TFLITE, "--server_processes", "2"], TUNED_BATCHING, connections=4, on_baseline=False
    ),
}


def bare_interpreter_rate(model_file: Path, image: np.ndarray, seconds: float) -> float:
    """Invokes/s of one LiteRT interpreter on one thread, the input set once."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_file.read_bytes(), num_threads=1)
    interpreter.allocate_tensors()
    (detail,) = interpreter.get_input_details()
    interpreter.set_tensor(detail["index"], image.astype(detail["dtype"]))
    count, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        interpreter.invoke()
        count += 1
    return count / seconds


def with_server(
    flags: list[str], tmp: Path, baseline: str | None, work: Callable[[ServerProcess], dict]
) -> dict:
    env = os.environ.copy()
    if baseline:
        os.environ["PYTHONPATH"] = baseline  # start_server passes its environment on
    try:
        server = start_server(*flags, log_dir=tmp / "logs", timeout=300)
    finally:
        os.environ.clear()
        os.environ.update(env)
    try:
        return work(server)
    finally:
        server.stop()


def measure(
    server: ServerProcess,
    image: np.ndarray,
    grpc_body: bytes,
    rest_body: bytes,
    seconds: float,
    connections: int = 1,
) -> dict:
    """Throughput under load, server CPU per request, mean batch, 1-stream p50s."""
    with GrpcClient(server.grpc_target, MODEL) as client:  # h2load sees HTTP statuses only
        client.predict_raw({"images": image})
    pids = server_pids(server.process.pid)
    url = f"http://{server.grpc_target}/{PREDICT}"
    streams = {"streams": 16 // connections, "connections": connections}
    h2load(url, grpc_body, **streams, seconds=1)  # warm-up
    calls, rows = _batches(server)
    cpu = cpu_seconds(pids)
    load = h2load(url, grpc_body, **streams, seconds=seconds)
    grpc_cpu = cpu_seconds(pids) - cpu
    calls_after, rows_after = _batches(server)
    rest_url = f"{server.rest_url}/v1/models/{MODEL}:predict"
    wrk(rest_url, rest_body, connections=16, seconds=1)  # warm-up
    cpu = cpu_seconds(pids)
    rest = wrk(rest_url, rest_body, connections=16, seconds=seconds)
    rest_cpu = cpu_seconds(pids) - cpu
    batches = calls_after - calls
    return {
        "grpc_rps": load.per_second,
        "grpc_cpu_ms": 1000 * grpc_cpu / max(load.requests, 1),
        "grpc_failed": load.failed,
        "mean_batch": (rows_after - rows) / batches if batches else None,
        "rest_rps": rest.per_second,
        "rest_cpu_ms": 1000 * rest_cpu / max(rest.requests, 1),
        "rest_failed": rest.failed,
        "grpc_p50_ms": h2load(url, grpc_body, streams=1, requests=2000).p50_ms,
        "rest_p50_ms": wrk(rest_url, rest_body, connections=1, seconds=2).p50_ms,
    }


def _batches(server: ServerProcess) -> tuple[float, float]:
    """(batched model calls, rows they ran) so far, from the server's Prometheus metrics."""
    import requests

    page = requests.get(f"{server.rest_url}/monitoring/prometheus/metrics", timeout=30).text
    values = {}
    for line in page.splitlines():
        name, _, value = line.partition(" ")
        values[name] = value
    return (
        float(values.get("fmnist_serving_batch_size_count", 0)),
        float(values.get("fmnist_serving_batch_size_sum", 0)),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path, help="required unless --merge")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline-pythonpath")
    parser.add_argument("--all-on-baseline", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--only", action="append", metavar="NAME")
    parser.add_argument("--merge", nargs="+", type=Path, metavar="SUMMARY")
    args = parser.parse_args()
    if args.merge:
        return _merge(args.merge, args.out)
    if args.bundle is None:
        parser.error("--bundle is required")
    configurations = {
        name: c
        for name, c in CONFIGURATIONS.items()
        if not args.only or any(_matches(name, pattern) for pattern in args.only)
    }
    image = dataset.load_test(args.data_dir).images[:1, ..., None]  # uint8 [1, 28, 28, 1]
    request = pb.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["images"].CopyFrom(to_tensor_proto(image))
    grpc_body = grpc_frame(request.SerializeToString())
    rest_body = json.dumps({"instances": image.tolist()}).encode()
    bundle = args.bundle.resolve()
    arms = {"current": None}
    if args.baseline_pythonpath:
        arms["baseline"] = args.baseline_pythonpath
    results: dict = {
        arm: {
            name: []
            for name, c in configurations.items()
            if c.on_baseline or arm == "current" or args.all_on_baseline
        }
        for arm in arms
    }
    bare = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "monitoring.config").write_text(MONITORING)
        common = ["--model_name", MODEL, "--model_base_path", str(bundle.parent)]
        common += ["--monitoring_config_file", str(tmp / "monitoring.config")]
        for _ in range(args.rounds):
            bare.append(bare_interpreter_rate(bundle / "model.tflite", image, 2.0))
            for name, config in configurations.items():
                flags = [*common, *config.flags]
                if config.batching:
                    batching_file = tmp / "batching.config"
                    batching_file.write_text(config.batching)
                    flags += ["--enable_batching", "--batching_parameters_file", str(batching_file)]
                for arm, pythonpath in arms.items():
                    if name not in results[arm]:
                        continue
                    row = with_server(
                        flags,
                        tmp,
                        pythonpath,
                        lambda server, c=config: measure(
                            server, image, grpc_body, rest_body, args.seconds, c.connections
                        ),
                    )
                    results[arm][name].append(row)
                    print(json.dumps({"arm": arm, "configuration": name, **row}), file=sys.stderr)
    summary = {
        "bare_interpreter_invokes_s": statistics.median(bare),
        **{
            arm: {name: _medians(rows) for name, rows in by_name.items()}
            for arm, by_name in results.items()
        },
    }
    _report(summary)
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2))
    return 0


def _matches(name: str, pattern: str) -> bool:
    """`pattern` is the configuration's name, or a prefix of it followed by `*`."""
    return name.startswith(pattern[:-1]) if pattern.endswith("*") else name == pattern


def _merge(paths: list[Path], out: Path | None) -> int:
    """Report (and write) the summaries of several runs as one; bare interpreter: median."""
    summaries = [json.loads(path.read_text()) for path in paths]
    merged: dict = {}
    for summary in summaries:
        for arm, rows in summary.items():
            if isinstance(rows, dict):
                merged.setdefault(arm, {}).update(rows)
    bare = [s["bare_interpreter_invokes_s"] for s in summaries]
    merged = {"bare_interpreter_invokes_s": statistics.median(bare), **merged}
    _report(merged)
    if out:
        out.write_text(json.dumps(merged, indent=2))
    return 0


def _medians(rows: list[dict]) -> dict:
    return {
        key: statistics.median(r[key] for r in rows) if rows[0][key] is not None else None
        for key in rows[0]
    }


def _report(summary: dict) -> None:
    current, bare = summary["current"], summary["bare_interpreter_invokes_s"]
    baseline = summary.get("baseline")
    print(
        "| configuration | gRPC req/s | gRPC CPU ms/req | mean batch | REST req/s | "
        "REST CPU ms/req | gRPC p50 ms | REST p50 ms |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for arm, rows in (("", current), (" (baseline)", baseline or {})):
        for name, row in rows.items():
            batch = f"{row['mean_batch']:.1f}" if row["mean_batch"] else "-"
            print(
                f"| {name}{arm} | {row['grpc_rps']:,.0f} | {row['grpc_cpu_ms']:.2f} | {batch} | "
                f"{row['rest_rps']:,.0f} | {row['rest_cpu_ms']:.2f} | {row['grpc_p50_ms']:.2f} | "
                f"{row['rest_p50_ms']:.2f} |"
            )
    print(f"\nbare interpreter: {bare:,.0f} invokes/s")
    for batched, alone in (
        ("SavedModel, batching", "SavedModel"),
        ("SavedModel, 1 op thread, batching", "SavedModel, 1 op thread"),
        ("SavedModel, 1 op thread, batching", "SavedModel"),
    ):
        if batched not in current or alone not in current:
            continue
        ratio = current[batched]["grpc_rps"] / current[alone]["grpc_rps"]
        print(f"{batched}: x{ratio:.2f} of {alone} (target >= 2.5)")
    for name in ("TFLite int8", "TFLite int8, 2 processes", "TFLite int8, 2 processes, batching"):
        if name not in current:
            continue
        ratio = current[name]["grpc_rps"] / bare
        print(f"{name} over gRPC: {ratio:.3f} of the bare interpreter (target >= 0.25)")
    if baseline:
        for name in ("SavedModel", "TFLite int8"):
            if name not in baseline or name not in current:
                continue
            for candidate in (name, f"{name}, 1 op thread"):
                if candidate in current:
                    ratio = current[candidate]["rest_cpu_ms"] / baseline[name]["rest_cpu_ms"]
                    print(
                        f"REST CPU per request, {candidate}: x{ratio:.2f} of the baseline's "
                        f"{name} (target <= 0.5)"
                    )
            for api in ("grpc", "rest"):
                p50 = current[name][f"{api}_p50_ms"] / baseline[name][f"{api}_p50_ms"]
                print(f"{api} 1-stream p50, {name}: x{p50:.2f} of the baseline (target <= 1.05)")
        print(
            "\n| configuration | gRPC req/s | REST req/s | gRPC p50 | REST p50 | (x the baseline's)"
        )
        print("| --- | --- | --- | --- | --- |")
        for name in baseline:
            ratios = [
                current[name][key] / baseline[name][key]
                for key in ("grpc_rps", "rest_rps", "grpc_p50_ms", "rest_p50_ms")
            ]
            print(f"| {name} | " + " | ".join(f"x{r:.3f}" for r in ratios) + " |")


if __name__ == "__main__":
    sys.exit(main())
