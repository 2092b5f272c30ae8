"""Benchmark `fmnist serve` against the in-process SavedModel signature, side by side.

Starts a real server process on loopback, then measures, one after the other with a
bounded number of calls each: the SavedModel's `serving_default` called in this
process, gRPC Predict (official stubs) and REST :predict. Reports median (p50) and p90
latency at batch 1 and images/s at batch 64 (sequential calls, one client), prints a
table and optionally writes JSON.

    python benchmarks/bench_server.py --out bench.json
    python benchmarks/bench_server.py --model_base_path artifacts/serving/fmnist

Without --model_base_path it builds the project's CNN (default TrainConfig, untrained
weights: the compute is what matters) behind the exported signature: images uint8
[-1,28,28] -> probabilities float32 [-1,10], class_ids int64 [-1].
Targets (issue 4): gRPC batch-64 throughput >= 90% of in-process; gRPC batch-1 p50
<= 1.5 ms; REST batch-1 p50 <= 3 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc
import numpy as np
import requests
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from fmnist.layout import latest_version

READY = re.compile(r"fmnist serve: gRPC on \S+:(\d+), REST on \S+:(\d+)")
MODEL = "fmnist"


def build_model(model_dir: Path) -> Path:
    """The project's CNN behind the serving signature, saved as version 1 of `model_dir`.

    Written with Keras' ExportArchive: a Keras 3 model saved by `tf.saved_model.save` from
    a tf.Module does not restore its variables in TF Serving (nor here), see issue notes."""
    import keras

    from fmnist.preprocessing import preprocess
    from fmnist.train.config import TrainConfig
    from fmnist.train.model import build_model as build_cnn

    cnn = build_cnn(TrainConfig())

    def serve(images):
        probabilities = cnn(preprocess(images), training=False)
        return {"probabilities": probabilities, "class_ids": tf.argmax(probabilities, axis=1)}

    archive = keras.export.ExportArchive()
    archive.track(cnn)
    images = tf.TensorSpec([None, 28, 28], tf.uint8, name="images")
    archive.add_endpoint("serving_default", serve, input_signature=[images])
    archive.write_out(str(model_dir / "1"), verbose=False)
    return model_dir


def measure(call: Callable[[], object], calls: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        call()
    seconds = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return seconds


def summary(seconds: list[float], batch: int) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "batch": batch,
        "calls": len(seconds),
        "p50_ms": statistics.median(ordered) * 1e3,
        "p90_ms": ordered[int(0.9 * (len(ordered) - 1))] * 1e3,
        "images_per_s": batch * len(seconds) / sum(seconds),
    }


def start_server(model_dir: Path) -> tuple[subprocess.Popen, int, int]:
    command = [
        *(sys.executable, "-m", "fmnist.cli", "serve", "--port", "0", "--rest_api_port", "auto"),
        *("--model_name", MODEL, "--model_base_path", str(model_dir)),
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    for line in process.stdout:
        match = READY.search(line)
        if match:
            return process, int(match.group(1)), int(match.group(2))
    raise SystemExit(f"server exited with {process.wait()} before it was ready")


def run(model_dir: Path, calls: int, warmup: int) -> dict[str, dict]:
    version_dir = model_dir / str(latest_version(model_dir))
    signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    rng = np.random.default_rng(0)
    batches = {n: rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8) for n in (1, 64)}
    results: dict[str, dict] = {}

    for n, images in batches.items():
        tensor = tf.constant(images)
        seconds = measure(
            lambda t=tensor: signature(images=t)["probabilities"].numpy(), calls, warmup
        )
        results[f"in-process b{n}"] = summary(seconds, n)

    process, grpc_port, rest_port = start_server(model_dir)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            for n, images in batches.items():
                request = predict_pb2.PredictRequest()
                request.model_spec.name = MODEL
                request.inputs["images"].CopyFrom(tf.make_tensor_proto(images))

                def grpc_call(r=request):
                    return tf.make_ndarray(stub.Predict(r, timeout=30).outputs["probabilities"])

                results[f"gRPC b{n}"] = summary(measure(grpc_call, calls, warmup), n)
        with requests.Session() as session:
            url = f"http://127.0.0.1:{rest_port}/v1/models/{MODEL}:predict"
            headers = {"Content-Type": "application/json"}
            for n, images in batches.items():
                body = json.dumps({"instances": images.tolist()})

                def rest_call(b=body):
                    response = session.post(url, data=b, headers=headers, timeout=30)
                    response.raise_for_status()
                    return response.json()["predictions"]

                results[f"REST b{n}"] = summary(measure(rest_call, calls, warmup), n)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model_base_path", type=Path, help="served model dir (default: build one)"
    )
    parser.add_argument("--calls", type=int, default=400, help="timed calls per row (default 400)")
    parser.add_argument("--warmup", type=int, default=40, help="untimed calls per row first")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        model_dir = args.model_base_path or build_model(Path(scratch) / MODEL)
        results = run(model_dir, args.calls, args.warmup)

    print(f"{'path':<16}{'p50 ms':>9}{'p90 ms':>9}{'images/s':>11}")
    for name, row in results.items():
        print(f"{name:<16}{row['p50_ms']:>9.3f}{row['p90_ms']:>9.3f}{row['images_per_s']:>11.0f}")
    ratio = results["gRPC b64"]["images_per_s"] / results["in-process b64"]["images_per_s"]
    checks = {
        "grpc_b64_vs_in_process": ratio,
        "grpc_b64_ok": ratio >= 0.9,
        "grpc_b1_p50_ok": results["gRPC b1"]["p50_ms"] <= 1.5,
        "rest_b1_p50_ok": results["REST b1"]["p50_ms"] <= 3.0,
    }
    print(
        f"gRPC b64 / in-process: {ratio:.0%} (target >= 90%); gRPC b1 p50 target <= 1.5 ms; "
        "REST b1 p50 target <= 3 ms"
    )
    if args.out:
        args.out.write_text(json.dumps({"results": results, "checks": checks}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
