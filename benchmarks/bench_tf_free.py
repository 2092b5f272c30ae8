"""TF Serving's wire without TensorFlow: what a `[client]` install costs, and the TF-free
server's gRPC latency, each side by side with the TensorFlow install.

    python benchmarks/bench_tf_free.py --bundle MODELS/fashion_mnist/1 --data-dir D
        [--client-python P] [--edge-python P] [--rounds 3] [--out OUT.json]

Environments: this interpreter is the TensorFlow install (`.[dev]`); `--client-python` and
`--edge-python` name a `[client]` and an `[edge]` install, built in a temporary directory
(pip, from this checkout) when not given. Measured:
  * site-packages of each install (MB);
  * importing the gRPC client in a fresh process (median of 7);
  * `fmnist parity` of the 10,000 test images over gRPC and REST against one `fmnist
    serve` of the bundle, from each install, alternated, median of `--rounds`;
  * batch-1 gRPC Predict p50 (h2load, one stream) of `fmnist serve --prefer_tflite_model`
    on the bundle's model.tflite, run by the `[edge]` install and by this one, alternated.
Targets (issue 40): `[client]` site-packages <= 160 MB, client import <= 0.5 s, parity
no slower than from the TensorFlow install (ratio <= 1.05, the noise seen between rounds).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from loadgen import grpc_frame, h2load

from fmnist.serving.client import GrpcClient
from fmnist.serving.server.process import start_server
from fmnist.serving.wire import messages as pb
from fmnist.serving.wire.tensor_proto import to_tensor_proto

REPO = Path(__file__).resolve().parents[1]
PREDICT = f"{pb.PREDICTION_SERVICE}/Predict"
# -c and -m put the working directory first on sys.path: from a clone's root its fmnist/
# folder (the core package alone) would shadow the install.
ENV = {**os.environ, "PYTHONSAFEPATH": "1"}
IMPORT_CLIENT = (
    "import time; t = time.perf_counter(); import fmnist.serving.client.grpc_client; "
    "print(time.perf_counter() - t)"
)


def build_env(root: Path, extra: str) -> str:
    venv = root / extra
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin/python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, f"{REPO}[{extra}]"], check=True)
    return str(venv / "bin/python")


def site_packages_mb(python: str) -> float:
    path = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    size = subprocess.run(["du", "-sk", path], capture_output=True, text=True, check=True)
    return int(size.stdout.split()[0]) / 1024


def import_seconds(python: str, runs: int = 7) -> float:
    times = [
        float(
            subprocess.run(
                [python, "-c", IMPORT_CLIENT], capture_output=True, text=True, check=True, env=ENV
            ).stdout
        )
        for _ in range(runs)
    ]
    return statistics.median(times)


def parity_seconds(python: str, endpoint: list[str], bundle: Path, data_dir: Path) -> float:
    """The parity check's own time for sending 10,000 images and comparing (its JSON)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "parity.json"
        command = [python, "-m", "fmnist.cli", "parity", *endpoint, "--model-name", "fm"]
        command += ["--bundle", str(bundle), "--data-dir", str(data_dir), "--json", str(report)]
        subprocess.run(command, check=True, capture_output=True, env=ENV)
        return json.loads(report.read_text())["details"]["wall_time_s"]


def grpc_p50_ms(server, requests: int) -> float:
    image = np.zeros((1, 28, 28), np.uint8)
    with GrpcClient(server.grpc_target, "fm") as client:  # a real client checks the answer
        outputs, _ = client.predict_raw({"images": image})
        assert "scores" in outputs, outputs
    request = pb.PredictRequest()
    request.model_spec.name = "fm"
    request.inputs["images"].CopyFrom(to_tensor_proto(image))
    url = f"http://{server.grpc_target}/{PREDICT}"
    load = h2load(url, grpc_frame(request.SerializeToString()), streams=1, requests=requests)
    assert load.failed == 0
    return load.p50_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--client-python")
    parser.add_argument("--edge-python")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    base = args.bundle.resolve().parent
    envs = {"tf": sys.executable}
    with tempfile.TemporaryDirectory() as tmp:
        envs["client"] = args.client_python or build_env(Path(tmp), "client")
        envs["edge"] = args.edge_python or build_env(Path(tmp), "edge")
        result: dict = {
            "site_packages_mb": {name: site_packages_mb(py) for name, py in envs.items()},
            "client_import_s": {name: import_seconds(envs[name]) for name in ("client", "tf")},
        }
        logs = Path(tmp) / "logs"
        served = start_server("--model_name", "fm", "--model_base_path", str(base), log_dir=logs)
        try:
            apis = {"gRPC": ["--grpc", served.grpc_target], "REST": ["--rest", served.rest_url]}
            times = {f"{env} {api}": [] for api in apis for env in ("client", "tf")}
            for _ in range(args.rounds):
                for api, endpoint in apis.items():
                    for env in ("client", "tf"):
                        seconds = parity_seconds(envs[env], endpoint, args.bundle, args.data_dir)
                        times[f"{env} {api}"].append(seconds)
        finally:
            served.stop()
        result["parity_s"] = {key: statistics.median(v) for key, v in times.items()}
        latencies = {"edge": [], "tf": []}
        for _ in range(args.rounds):
            for env in latencies:
                server = start_server(
                    *("--prefer_tflite_model", "--model_name", "fm"),
                    *("--model_base_path", str(base)),
                    log_dir=logs,
                    python=envs[env],
                )
                try:
                    latencies[env].append(grpc_p50_ms(server, args.requests))
                finally:
                    server.stop()
        result["tflite_grpc_p50_ms"] = {env: statistics.median(v) for env, v in latencies.items()}
    _report(result)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


def _report(result: dict) -> None:
    size, imports = result["site_packages_mb"], result["client_import_s"]
    parity, p50 = result["parity_s"], result["tflite_grpc_p50_ms"]
    rows = [
        ("site-packages MB", f"{size['client']:.0f}", f"{size['tf']:.0f}", "[client] <= 160"),
        ("client import s", f"{imports['client']:.3f}", f"{imports['tf']:.3f}", "<= 0.5"),
    ]
    for api in ("gRPC", "REST"):
        ours, theirs = parity[f"client {api}"], parity[f"tf {api}"]
        ratio = f"x{ours / theirs:.2f} (<= 1.05)"
        rows.append((f"parity 10k over {api} s", f"{ours:.2f}", f"{theirs:.2f}", ratio))
    rows.append(("TFLite server gRPC p50 ms", f"{p50['edge']:.3f}", f"{p50['tf']:.3f}", "[edge]"))
    print("| measure | without TF | with TF | target |\n| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"[edge] site-packages: {size['edge']:.0f} MB")


if __name__ == "__main__":
    sys.exit(main())
