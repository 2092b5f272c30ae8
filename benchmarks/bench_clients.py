"""Served-model parity over gRPC and REST, and the clients' overhead over raw calls.

    python benchmarks/bench_clients.py [--bundle BUNDLE | --run runs/bench/train/run]
        [--repeats 3] [--batch-size 256] [--out runs/bench/clients]

Serves the bundle with a local `fmnist serve` (the bundle's parent is the model base
path), then, interleaved, `--repeats` times each:
  * the full 10,000-image parity check (`run_served_parity`: test set, reference,
    every batch, comparison) with `GrpcClient` and with `RestClient`;
  * the same batches through the clients' `predict` and through raw calls: the official
    `PredictionServiceStub.Predict` (tf.make_tensor_proto / tf.make_ndarray), and a bare
    `requests` POST of the row format, JSON-decoded.
Prints medians, writes OUT/bench_clients.json. Without --bundle it exports RUN (the
default model trained by benchmarks/bench_train.py) into OUT/models first.
Targets (issue 5): gRPC parity < 10 s, REST parity < 20 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc
import numpy as np
import requests
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from fmnist import dataset
from fmnist.manifest import load_manifest
from fmnist.serving.client import GrpcClient, RestClient
from fmnist.serving.client.parity import run_served_parity
from fmnist.serving.server.process import start_server


def export_bundle(run: Path, out: Path, data_dir: Path | None) -> Path:
    """Export RUN as a fresh version under OUT/models; return the bundle directory."""
    from fmnist.export.config import ExportConfig
    from fmnist.export.export import export_run

    config = ExportConfig(base_path=out / "models", data_dir=data_dir)
    return export_run(run, config).bundle_dir


def raw_grpc(target: str, model: str, batches: list[np.ndarray]) -> Callable[[], np.ndarray]:
    """The same batches through the bare official stub."""
    channel = grpc.insecure_channel(
        target,
        options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)],
    )
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

    def call() -> np.ndarray:
        outputs = []
        for batch in batches:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model
            request.inputs["images"].CopyFrom(tf.make_tensor_proto(batch))
            response = stub.Predict(request, timeout=30)
            outputs.append(tf.make_ndarray(response.outputs["probabilities"]))
        return np.concatenate(outputs)

    return call


def raw_rest(url: str, model: str, batches: list[np.ndarray]) -> Callable[[], np.ndarray]:
    """The same batches as bare `requests` POSTs of the row format."""
    session = requests.Session()
    endpoint = f"{url}/v1/models/{model}:predict"
    headers = {"Content-Type": "application/json"}

    def call() -> np.ndarray:
        outputs = []
        for batch in batches:
            body = json.dumps({"instances": batch.tolist()})
            response = session.post(endpoint, data=body, headers=headers, timeout=30)
            response.raise_for_status()
            rows = response.json()["predictions"]
            outputs.append(np.asarray([row["probabilities"] for row in rows], np.float32))
        return np.concatenate(outputs)

    return call


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="exported bundle (default: export RUN)")
    parser.add_argument("--run", type=Path, default=Path("runs/bench/train/run"))
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("FMNIST_DATA_DIR"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/clients"))
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    bundle = args.bundle or export_bundle(args.run, args.out, args.data_dir)
    manifest = load_manifest(bundle)
    model = manifest.model_name
    images = dataset.load_test(args.data_dir).images
    batches = [images[i : i + args.batch_size] for i in range(0, len(images), args.batch_size)]

    server = start_server(
        *("--model_name", model, "--model_base_path", str(Path(bundle).parent)),
        log_dir=args.out / "logs",
    )
    samples: dict[str, list[float]] = {}
    parity: dict[str, dict] = {}
    try:
        grpc_client = GrpcClient(server.grpc_target, model, batch_size=args.batch_size)
        rest_client = RestClient(server.rest_url, model, batch_size=args.batch_size)
        grpc_client.wait_until_available(60)
        paths = {
            "gRPC parity": lambda: run_served_parity(grpc_client, bundle, args.data_dir),
            "REST parity": lambda: run_served_parity(rest_client, bundle, args.data_dir),
            "gRPC client predict": lambda: grpc_client.predict(images),
            "gRPC raw stub": raw_grpc(server.grpc_target, model, batches),
            "REST client predict": lambda: rest_client.predict(images),
            "REST raw requests": raw_rest(server.rest_url, model, batches),
        }
        for name, call in paths.items():  # warm up every path once, and check parity
            result = call()
            if "parity" in name:
                parity[name] = {"passed": result.passed, "agreement": result.agreement}
        for _ in range(args.repeats):
            for name, call in paths.items():
                samples.setdefault(name, []).append(timed(call))
        grpc_client.close()
        rest_client.close()
    finally:
        code = server.stop()
    if code != 0:
        raise SystemExit(f"fmnist serve exited with {code} (log {server.log_path})")

    median = {name: statistics.median(values) for name, values in samples.items()}
    overhead = {
        api: median[f"{api} client predict"] / median[raw] - 1
        for api, raw in (("gRPC", "gRPC raw stub"), ("REST", "REST raw requests"))
    }
    print(f"{len(images)} images, batch {args.batch_size}, median of {args.repeats}, {bundle}")
    print(f"{'path':<22}{'seconds':>9}{'images/s':>10}")
    for name, seconds in median.items():
        print(f"{name:<22}{seconds:>9.2f}{len(images) / seconds:>10.0f}")
    print(
        f"client overhead vs raw: gRPC {overhead['gRPC']:+.1%}, REST {overhead['REST']:+.1%}; "
        f"targets: gRPC parity < 10 s ({median['gRPC parity']:.2f}), "
        f"REST parity < 20 s ({median['REST parity']:.2f})"
    )
    report = {
        "bundle": str(bundle),
        "images": len(images),
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "seconds": samples,
        "median_s": median,
        "client_overhead": overhead,
        "parity": parity,
        "checks": {
            "grpc_parity_under_10s": median["gRPC parity"] < 10,
            "rest_parity_under_20s": median["REST parity"] < 20,
        },
    }
    (args.out / "bench_clients.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out / 'bench_clients.json'}")


if __name__ == "__main__":
    main()
