"""What request logging (a model's logging_config) costs in throughput: gRPC Predict from
h2load, 16 concurrent streams, on the SavedModel and TFLite paths, sampling rates side by
side in one run; issue 50's targets, checked.

    python benchmarks/bench_request_logging.py --bundle MODELS/fashion_mnist/1 --data-dir D
        [--seconds 5] [--rounds 3] [--paths SavedModel "TFLite int8"] [--out OUT.json]

One server per path serves the bundle from a models.config polled every 0.2 s. Each round
measures every rate (0, 1.0, 0.01), in an order rotated each round, by rewriting that
config: the arms share the server, its warm-up and the machine's drift. Each arm: 1 s of
warm-up, then `--seconds` of load, one real test image per request; the server's metrics
give the records written and dropped, /proc the server's CPU time per request (less
sensitive than requests/s to other work on the machine). A rate's cost is 1 - its
requests/s over rate 0's in the same round; medians over the rounds.
Targets: rate 1.0 costs <= 10%, 0.01 <= 2%.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from loadgen import cpu_seconds, grpc_frame, h2load, server_pids

from fmnist import dataset
from fmnist.serving.client import GrpcClient
from fmnist.serving.server.process import ServerProcess, start_server
from fmnist.serving.wire import messages as pb
from fmnist.serving.wire.tensor_proto import to_tensor_proto

MODEL = "fashion_mnist"
PREDICT = f"{pb.PREDICTION_SERVICE}/Predict"
MONITORING = 'prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }'
PATHS = {"SavedModel": [], "TFLite int8": ["--prefer_tflite_model"]}
RATES = (0.0, 1.0, 0.01)
TARGETS = {1.0: 0.10, 0.01: 0.02}  # largest share of rate 0's throughput a rate may cost


def models_config(base_path: Path, prefix: Path, rate: float) -> str:
    return (
        f'model_config_list {{ config {{ name: "{MODEL}" base_path: "{base_path}" '
        f'logging_config {{ log_collector_config {{ filename_prefix: "{prefix}" }} '
        f"sampling_config {{ sampling_rate: {rate} }} }} }} }}"
    )


def log_counts(server: ServerProcess) -> tuple[float, float]:
    """(records written, records dropped) so far, from the server's Prometheus metrics."""
    import requests

    page = requests.get(f"{server.rest_url}/monitoring/prometheus/metrics", timeout=30).text
    written = dropped = 0.0
    for line in page.splitlines():
        if line.startswith("fmnist_serving_request_log_records_total"):
            written += float(line.rsplit(" ", 1)[1])
        elif line.startswith("fmnist_serving_request_log_dropped_total"):
            dropped += float(line.rsplit(" ", 1)[1])
    return written, dropped


def set_rate(server: ServerProcess, config: Path, text: str, reloads: int) -> None:
    """Rewrite the config and wait until the server has reloaded it `reloads` times."""
    config.write_text(text)
    deadline = time.monotonic() + 30
    while server.log().count("Reloaded model config file") < reloads:
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not reload its config")
        time.sleep(0.05)


def measure_path(flags: list[str], bundle: Path, tmp: Path, body: bytes, args) -> dict:
    """One server on this path: rate -> a row per round."""
    config, prefix = tmp / "models.config", tmp / "request-logs" / "requests"
    prefix.parent.mkdir(exist_ok=True)
    config.write_text(
        f'model_config_list {{ config {{ name: "{MODEL}" base_path: "{bundle.parent}" }} }}'
    )
    server = start_server(
        *("--model_config_file", str(config), "--model_config_file_poll_wait_seconds", "0.2"),
        *("--monitoring_config_file", str(tmp / "monitoring.config"), *flags),
        log_dir=tmp / "logs",
        timeout=300,
    )
    rows: dict = {rate: [] for rate in RATES}
    try:
        with GrpcClient(server.grpc_target, MODEL) as client:  # h2load sees HTTP statuses only
            client.predict_raw({"images": args.image})
        url = f"http://{server.grpc_target}/{PREDICT}"
        reloads = 0
        for round_index in range(args.rounds):
            for rate in RATES[round_index % 3 :] + RATES[: round_index % 3]:
                reloads += 1
                set_rate(server, config, models_config(bundle.parent, prefix, rate), reloads)
                rows[rate].append(measure_rate(server, url, body, args.seconds))
                print(json.dumps({"rate": rate, **rows[rate][-1]}), file=sys.stderr)
    finally:
        server.stop()
    return rows


def measure_rate(server: ServerProcess, url: str, body: bytes, seconds: float) -> dict:
    h2load(url, body, streams=16, seconds=1)  # warm-up
    time.sleep(0.5)  # its records written before counting starts
    before, pids = log_counts(server), server_pids(server.process.pid)
    cpu = cpu_seconds(pids)
    load = h2load(url, body, streams=16, seconds=seconds)
    time.sleep(0.5)  # the writer catches up before its counts are read
    cpu = cpu_seconds(pids) - cpu  # its writing included
    written, dropped = (a - b for a, b in zip(log_counts(server), before, strict=True))
    return {
        "grpc_rps": load.per_second,
        "cpu_ms": 1000 * cpu / max(load.requests, 1),
        "failed": load.failed,
        "requests": load.requests,
        "written": written,
        "dropped": dropped,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--paths", nargs="+", choices=list(PATHS), default=list(PATHS))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    args.image = dataset.load_test(args.data_dir).images[:1, ..., None]  # [N, 28, 28, 1]
    request = pb.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["images"].CopyFrom(to_tensor_proto(args.image))
    body = grpc_frame(request.SerializeToString())
    bundle = args.bundle.resolve()
    runs = {}
    for path in args.paths:
        flags = PATHS[path]
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "monitoring.config").write_text(MONITORING)
            runs[path] = measure_path(flags, bundle, Path(tmp), body, args)
    summary = {path: summarize(by_rate) for path, by_rate in runs.items()}
    print(report(summary))
    if args.out:
        args.out.write_text(json.dumps({"medians": summary, "runs": _keyed(runs)}, indent=2))
    return 0


def summarize(by_rate: dict) -> dict:
    """Per rate: the medians of its rows, and of its cost against rate 0 round by round."""
    summary = {}
    for rate, rows in by_rate.items():
        medians = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
        bases = by_rate[0.0]
        costs = [1 - r["grpc_rps"] / b["grpc_rps"] for r, b in zip(rows, bases, strict=True)]
        cpu = [r["cpu_ms"] / b["cpu_ms"] - 1 for r, b in zip(rows, bases, strict=True)]
        summary[str(rate)] = {
            **medians,
            "cost": statistics.median(costs),
            "costs": costs,
            "cpu_cost": statistics.median(cpu),
        }
    return summary


def _keyed(runs: dict) -> dict:
    return {
        path: {str(rate): rows for rate, rows in by_rate.items()} for path, by_rate in runs.items()
    }


def report(summary: dict) -> str:
    """The Markdown table: each path's rates, their cost against rate 0, and the verdicts."""
    lines = [
        "| path | sampling rate | gRPC req/s | throughput lost vs rate 0 (per round) | target "
        "| server CPU per request vs rate 0 | logged | dropped |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for path, by_rate in summary.items():
        for rate in RATES:
            row = by_rate[str(rate)]
            cost = row["cost"]
            target = TARGETS.get(rate)
            verdict = (
                "-"
                if target is None
                else f"<= {target:.0%}: {'met' if cost <= target else 'MISSED'}"
            )
            share = f"{row['written'] / max(row['requests'], 1):.1%} of requests" if rate else "0"
            rounds = ", ".join(f"{c:+.1%}" for c in row["costs"])
            lost = "-" if rate == 0 else f"{cost:+.1%} ({rounds})"
            cpu = f"{row['cpu_ms']:.3f} ms" + ("" if rate == 0 else f" ({row['cpu_cost']:+.1%})")
            lines.append(
                f"| {path} | {rate:g} | {row['grpc_rps']:,.0f} | {lost} | {verdict} | {cpu} "
                f"| {share} | {row['dropped']:,.0f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
