"""Inside an emulated Pi userland: `fmnist serve --prefer_tflite_model` on the bundle's
model.tflite, without TensorFlow, answers REST and gRPC predicts exactly as `fmnist-edge`.

    python serve_probe.py BASE_PATH SAMPLES.npy [--requests N]

Starts the server (gRPC and REST on free loopback ports), waits for its ready line, sends
the sample images as one request over each API and compares the int8 scores with the edge
runner's on the same images (bit for bit), then times N one-image requests over each.
Prints one JSON line: {"ready_s", "equal", "grpc_equal", "p50_ms", "grpc_p50_ms",
"tensorflow_loaded"}. Exit 0 when all equal, 1 when not, 2 when it could not check. Runs
with the userland's venv Python (fmnist installed).
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

READY = re.compile(r"gRPC on \S+:(\d+), REST on \S+:(\d+)")


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode())
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def _p50_ms(call, runs: int) -> float:
    seconds = []
    for _ in range(runs):
        began = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - began)
    return round(statistics.median(seconds) * 1000, 2)


def _rest_scores(predictions: list) -> np.ndarray:
    """The answer rows: int8 `scores` (a bare list each) or named outputs' `probabilities`."""
    if predictions and isinstance(predictions[0], dict):
        return np.array([row["probabilities"] for row in predictions], np.float32)
    return np.array(predictions, np.int8)


def _same(served: np.ndarray, raw: np.ndarray, classifier) -> bool:
    """The server's answer equals the edge runner's: the int8 model's raw scores, or, for a
    model.tflite that dequantizes inside, the probabilities the runner computes from them
    (to a float32 rounding step: the kernel and numpy may round differently)."""
    if served.dtype == np.int8:
        return bool(np.array_equal(served, raw))
    expected = classifier.from_output(raw)
    return served.shape == expected.shape and bool(np.allclose(served, expected, rtol=0, atol=1e-6))


def main() -> int:
    base, samples = Path(sys.argv[1]), np.load(sys.argv[2])
    runs = int(sys.argv[sys.argv.index("--requests") + 1]) if "--requests" in sys.argv else 50
    command = [sys.executable, "-m", "fmnist.cli", "serve", "--prefer_tflite_model"]
    command += ["--port", "0", "--rest_api_port", "auto", "--model_name", "fashion_mnist"]
    command += ["--model_base_path", str(base)]
    start = time.monotonic()
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd="/")
    try:
        match = None
        for line in server.stdout:
            match = READY.search(line)
            if match:
                break
        if match is None:
            print(json.dumps({"error": f"no ready line (exit {server.wait()})"}))
            return 2
        ready_s = time.monotonic() - start
        url = f"http://127.0.0.1:{match.group(2)}/v1/models/fashion_mnist:predict"
        served = _rest_scores(_post(url, {"instances": samples.tolist()})["predictions"])

        from fmnist.edge.classifier import Classifier
        from fmnist.manifest import load_manifest
        from fmnist.serving.client import GrpcClient

        version = base / "1"
        manifest = load_manifest(version)
        classifier = Classifier(version / manifest.tflite("int8").file, contract=manifest.contract)
        raw = classifier.invoke(classifier.to_input(samples))
        with GrpcClient(f"127.0.0.1:{match.group(1)}", "fashion_mnist", timeout=120) as client:
            over_grpc, _ = client.predict_raw({"images": samples})
            one = samples[:1]
            grpc_p50_ms = _p50_ms(lambda: client.predict_raw({"images": one}), runs)
        image = samples[:1].tolist()
        maps = Path(f"/proc/{server.pid}/maps").read_text()
        grpc = over_grpc.get("probabilities", over_grpc.get("scores"))
        result = {
            "ready_s": round(ready_s, 2),
            "equal": _same(served, raw, classifier),
            "grpc_equal": _same(np.asarray(grpc), raw, classifier),
            "p50_ms": _p50_ms(lambda: _post(url, {"instances": image}), runs),
            "grpc_p50_ms": grpc_p50_ms,
            "tensorflow_loaded": "/tensorflow/" in maps,
        }
    finally:
        server.terminate()
        server.wait(60)
    print(json.dumps(result))
    ok = result["equal"] and result["grpc_equal"] and not result["tensorflow_loaded"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
