"""Request batching: throughput and latency of batch-1 gRPC Predicts with and without it.

    python benchmarks/bench_batching.py [--model-base-path DIR] [--seconds 10]
        [--clients 16] [--out runs/bench/batching]

Serves the fmnist CNN (DIR: a model base path holding version directories, e.g. the
parent of an exported bundle; default: the project's CNN with untrained weights, built by
benchmarks/bench_server.py, the same compute per image) with a local `fmnist serve`,
once without batching and once per batching setting, and drives each with N closed-loop
clients (one thread and one channel each, loopback), each sending batch-1 Predicts of
real Fashion-MNIST test images ($FMNIST_DATA_DIR) for --seconds. Every server gets
--grpc_max_threads 2*clients so that all clients' requests can be in flight (a worker
thread waits for its batch). Also reports the server's CPU per request and, first, the
model alone in this process (batch-1 vs batch-32 images/s: the most batching can gain on
this machine). Prints a table and writes OUT/bench_batching.json with the load average.

Targets (issue 12): with batching, throughput >= 3x without at 16 clients; at 1 client,
p50 at most 0.5 ms above unbatched with batch_timeout_micros 0 and 1000.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc
import numpy as np
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from fmnist import dataset
from fmnist.serving.server.process import start_server

REPO = Path(__file__).resolve().parents[1]
MODEL = "fmnist"
IMAGES = 512  # distinct test images cycled through by the clients


def batching_file(directory: Path, timeout_micros: int, threads: int) -> Path:
    """BatchingParameters for batch-1 clients on a small CPU: batches up to 32 rows."""
    path = directory / f"batching-{timeout_micros}.config"
    path.write_text(
        "max_batch_size { value: 32 }\n"
        f"batch_timeout_micros {{ value: {timeout_micros} }}\n"
        "max_enqueued_batches { value: 100 }\n"
        f"num_batch_threads {{ value: {threads} }}\n"
    )
    return path


def requests_for(images: np.ndarray) -> list[predict_pb2.PredictRequest]:
    """One batch-1 PredictRequest per image (uint8 [1, 28, 28], tensor_content)."""
    out = []
    for image in images:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL
        tensor = request.inputs["images"]
        tensor.dtype = types_pb2.DT_UINT8
        for size in (1, 28, 28):
            tensor.tensor_shape.dim.add(size=size)
        tensor.tensor_content = image.tobytes()
        out.append(request)
    return out


def drive(target: str, requests: list, clients: int, seconds: float) -> dict:
    """`clients` closed-loop threads for `seconds`; throughput and latency percentiles."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    start_line = threading.Barrier(clients + 1)
    end = [0.0]

    def client(index: int) -> None:
        with grpc.insecure_channel(target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            stub.Predict(requests[index % len(requests)], timeout=30)  # connect first
            start_line.wait()
            mine, i = latencies[index], index
            while True:
                began = time.perf_counter()
                if began >= end[0]:
                    return
                try:
                    stub.Predict(requests[i % len(requests)], timeout=10)
                except grpc.RpcError as err:
                    errors.append(f"{err.code().name}: {err.details()}")
                    return
                mine.append(time.perf_counter() - began)
                i += clients

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    end[0] = time.perf_counter() + 3600  # set for real once every client is connected
    start_line.wait()
    began = time.perf_counter()
    end[0] = began + seconds
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"{len(errors)} failed calls, first: {errors[0]}")
    flat = sorted(x for mine in latencies for x in mine)
    return {
        "requests": len(flat),
        "throughput_rps": round(len(flat) / elapsed, 1),
        "p50_ms": round(1e3 * flat[len(flat) // 2], 3),
        "p99_ms": round(1e3 * flat[min(len(flat) - 1, int(len(flat) * 0.99))], 3),
        "mean_ms": round(1e3 * statistics.fmean(flat), 3),
    }


def model_calls(rest_url: str) -> tuple[float, float]:
    """(batched model calls, rows they ran) so far, from the server's batching metric."""
    import requests

    page = requests.get(f"{rest_url}/monitoring/prometheus/metrics", timeout=10).text
    values = dict.fromkeys(
        ("fmnist_serving_batch_size_count", "fmnist_serving_batch_size_sum"), 0.0
    )
    for line in page.splitlines():
        name, _, value = line.partition(" ")
        if name in values:
            values[name] = float(value)
    return values["fmnist_serving_batch_size_count"], values["fmnist_serving_batch_size_sum"]


def cpu_seconds(pid: int | None = None) -> float:
    """User+system CPU time of a process (None: this one, the clients)."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def model_ceiling(base_path: Path, images: np.ndarray, seconds: float = 2.0) -> dict:
    """Images/s of the model alone, in this process (no server): batch-1 calls from 2
    threads vs batch-32 calls from 1: the most batching can gain on this machine."""
    from fmnist.layout import latest_version
    from fmnist.serving.server.servables.saved_model import SavedModelServable

    model = SavedModelServable(base_path / str(latest_version(base_path)))

    def rate(batch: int, threads: int) -> float:
        x = images[:batch]
        model.predict("", {"images": x})
        counts = [0] * threads
        end = time.perf_counter() + seconds

        def work(k: int) -> None:
            while time.perf_counter() < end:
                model.predict("", {"images": x})
                counts[k] += 1

        workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return round(sum(counts) * batch / seconds, 1)

    try:
        return {"batch1_2threads_img_s": rate(1, 2), "batch32_1thread_img_s": rate(32, 1)}
    finally:
        model.close()


def build_model(root: Path) -> Path:
    spec = importlib.util.spec_from_file_location(
        "bench_server", REPO / "benchmarks/bench_server.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_model(root / MODEL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-base-path", type=Path)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--batch-threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "batching")
    args = parser.parse_args()

    images = dataset.load_test().images[:IMAGES]
    requests = requests_for(images)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base_path = args.model_base_path or build_model(tmp)
        monitoring = tmp / "monitoring.config"
        monitoring.write_text(
            'prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }'
        )
        settings: list[tuple[str, list[str]]] = [("off", [])]
        for micros in (0, 1000):
            path = batching_file(tmp, micros, args.batch_threads)
            settings.append(
                (
                    f"timeout {micros} us",
                    ["--enable_batching", "--batching_parameters_file", str(path)],
                )
            )
        ceiling = model_ceiling(base_path, images)
        print(json.dumps({"model_alone": ceiling}), file=sys.stderr, flush=True)
        rows = []
        load_before = os.getloadavg()
        for name, flags in settings:
            server = start_server(
                *("--model_name", MODEL, "--model_base_path", str(base_path)),
                *("--grpc_max_threads", str(2 * args.clients)),
                *("--monitoring_config_file", str(monitoring)),
                *flags,
                log_dir=tmp / "logs",
            )
            try:
                drive(server.grpc_target, requests, 2, 1.0)  # warm-up
                for clients in (1, args.clients):
                    calls, ran = model_calls(server.rest_url)
                    row = {"batching": name, "clients": clients}
                    server_cpu, client_cpu = cpu_seconds(server.process.pid), cpu_seconds()
                    row.update(drive(server.grpc_target, requests, clients, args.seconds))
                    server_cpu = cpu_seconds(server.process.pid) - server_cpu
                    client_cpu = cpu_seconds() - client_cpu
                    row["server_cpu_ms_per_req"] = round(1e3 * server_cpu / row["requests"], 3)
                    row["client_cpu_ms_per_req"] = round(1e3 * client_cpu / row["requests"], 3)
                    if flags:
                        now_calls, now_ran = model_calls(server.rest_url)
                        row["model_calls"] = int(now_calls - calls)
                        row["mean_batch"] = round((now_ran - ran) / (now_calls - calls), 2)
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)
            finally:
                code = server.stop()
                if code != 0:
                    raise RuntimeError(f"fmnist serve exited {code}: {server.log()[-1000:]}")
        load_after = os.getloadavg()

    def find(name: str, clients: int) -> dict:
        return next(r for r in rows if r["batching"] == name and r["clients"] == clients)

    off_many, off_one = find("off", args.clients), find("off", 1)
    summary = {
        "speedup_at_many_clients": {
            name: round(find(name, args.clients)["throughput_rps"] / off_many["throughput_rps"], 2)
            for name, _ in settings[1:]
        },
        "p50_cost_at_1_client_ms": {
            name: round(find(name, 1)["p50_ms"] - off_one["p50_ms"], 3) for name, _ in settings[1:]
        },
    }
    header = (
        f"{'batching':<16}{'clients':>8}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'mean batch':>12}{'srv cpu/req':>14}"
    )
    print(header)
    for r in rows:
        batch = r.get("mean_batch") or "-"
        print(
            f"{r['batching']:<16}{r['clients']:>8}{r['throughput_rps']:>10}{r['p50_ms']:>9}"
            f"{r['p99_ms']:>9}{batch!s:>12}{r['server_cpu_ms_per_req']:>11} ms"
        )
    print(json.dumps(summary))
    print(f"model alone, no server (img/s): {ceiling}")
    print(f"load average (1/5/15 min) before {load_before}, after {load_after}")
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "seconds_per_arm": args.seconds,
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "rows": rows,
        "summary": summary,
        "model_alone": ceiling,
    }
    (args.out / "bench_batching.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
