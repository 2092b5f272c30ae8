"""Peak memory of `fmnist serve` for one large gRPC Predict, up to the request size limit.

For each batch size, starts a fresh server on loopback, warms it with a one-image request,
resets the process's peak-RSS counter (/proc/PID/clear_refs), sends one Predict of N
uint8 28x28 images (tensor_content) and reads VmHWM: the peak above idle is what the
request cost. The largest size fills --max_request_bytes (64 MiB: ~85,000 images).
Prints a table and optionally writes JSON.

    python benchmarks/bench_server_memory.py --out memory.json
    python benchmarks/bench_server_memory.py --models test --sizes 1 8192 85000

Models: `test` is the tiny stand-in of tests/serving/conftest.py (build_fmnist_model:
one matmul), `cnn` the project's CNN behind the exported signature (untrained weights,
as in bench_server.py), whose activations are what chunking bounds.
Target (issue 10): peak under 300 MB above idle at the size limit.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc
import numpy as np
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from fmnist.serving.server.process import start_server

REPO = Path(__file__).resolve().parents[1]
LIMIT = 64 << 20  # fmnist serve's default --max_request_bytes
LIMIT_IMAGES = (LIMIT - 4096) // 784  # room for the request's other fields


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(kind: str, root: Path) -> Path:
    """A model directory (version 1) of the given kind."""
    model_dir = root / kind
    if kind == "test":
        conftest = _load(REPO / "tests" / "serving" / "conftest.py", "serving_conftest")
        conftest.build_fmnist_model(model_dir / "1", 3)
        return model_dir
    return _load(REPO / "benchmarks" / "bench_server.py", "bench_server").build_model(model_dir)


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def _request(images: np.ndarray) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "fmnist"
    tensor = request.inputs["images"]
    tensor.dtype = types_pb2.DT_UINT8
    for size in images.shape:
        tensor.tensor_shape.dim.add(size=size)
    tensor.tensor_content = images.tobytes()
    return request


def measure(model_dir: Path, images: int, log_dir: Path, flat: bool = False) -> dict:
    """Idle RSS, peak RSS during one Predict of `images` images, and its wall time.

    `flat` sends the same bytes as [N, 784], which the signature refuses after the message
    is received and converted: the cost of the message alone, without running the model."""
    server = start_server(
        "--model_name", "fmnist", "--model_base_path", str(model_dir), log_dir=log_dir
    )
    try:
        pid = server.process.pid
        options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
        with grpc.insecure_channel(server.grpc_target, options=options) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            stub.Predict(_request(np.zeros((1, 28, 28), np.uint8)), timeout=120)
            shape = (images, 784) if flat else (images, 28, 28)
            batch = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
            request = _request(batch)
            time.sleep(0.5)  # let the warm-up's transient buffers go before reading idle
            idle = _status_kb(pid, "VmRSS")
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := current RSS
            start = time.perf_counter()
            try:
                response = stub.Predict(request, timeout=600)
                answered = len(response.outputs["class_ids"].int64_val)
            except grpc.RpcError as err:
                if not flat or err.code() != grpc.StatusCode.INVALID_ARGUMENT:
                    raise
                answered = 0
            seconds = time.perf_counter() - start
            peak = _status_kb(pid, "VmHWM")
        if answered != (0 if flat else images):
            raise RuntimeError(f"{answered} answers for {images} images")
    finally:
        code = server.stop()
        if code != 0:
            raise RuntimeError(f"fmnist serve exited {code}: {server.log()[-1000:]}")
    return {
        "images": images,
        "run": "refused" if flat else "predicted",
        "request_mb": round(request.ByteSize() / 1e6, 1),
        "idle_rss_mb": round(idle / 1024, 1),
        "peak_rss_mb": round(peak / 1024, 1),
        "peak_above_idle_mb": round((peak - idle) / 1024, 1),
        "seconds": round(seconds, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=["test", "cnn"], default=["test", "cnn"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[1, 8192, LIMIT_IMAGES])
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    parser.add_argument(
        "--refused",
        action="store_true",
        help="also send the largest size as [N, 784], refused after parsing: the message's cost",
    )
    args = parser.parse_args()
    if max(args.sizes) > LIMIT_IMAGES:
        parser.error(f"sizes above {LIMIT_IMAGES} images exceed the 64 MiB request limit")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        for kind in args.models:
            model_dir = build(kind, Path(tmp))
            for images in args.sizes:
                row = {"model": kind, **measure(model_dir, images, Path(tmp) / "logs")}
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
            if args.refused:
                largest = max(args.sizes)
                row = {"model": kind, **measure(model_dir, largest, Path(tmp) / "logs", True)}
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
    header = [
        "model",
        "images",
        "run",
        "request_mb",
        "idle_rss_mb",
        "peak_rss_mb",
        "peak_above_idle_mb",
        "seconds",
    ]
    print(" | ".join(header))
    for row in rows:
        print(" | ".join(str(row[h]) for h in header))
    if args.out:
        args.out.write_text(json.dumps({"limit_bytes": LIMIT, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
