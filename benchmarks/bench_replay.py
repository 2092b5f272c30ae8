"""Replay of logged traffic against `fmnist parity`, side by side on one server.

    python benchmarks/bench_replay.py --bundle MODELS/fashion_mnist/1 --data-dir D
        [--requests 10000] [--rounds 5] [--out runs/bench/replay]

Serves the bundle's model directory with a local `fmnist serve`, logs `--requests` real
Predict requests of one test image each (the project's PredictionLog writer; untimed),
then, alternating, `--rounds` times each over gRPC:
  * parity: `run_served_parity` of the 10,000 test images (load the test set and the
    reference, send every batch of 256, compare);
  * replay: `replay` of the log (read it, send its requests 256 examples per call, compare
    every answer with the logged one), without and with the latency sample (200 requests
    one by one, side by side with the logged version).
Prints a table of medians (images/s, and replay's rate as a share of parity's) and writes
OUT/bench_replay.json. Target (issue 50): replay of 10,000 logged requests over gRPC at
>= 80% of parity's rate.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from fmnist import dataset
from fmnist.rollout.endpoint import Endpoint
from fmnist.rollout.logs import RequestLog
from fmnist.rollout.replay import ReplayOptions, Target, replay
from fmnist.serving.client import GrpcClient
from fmnist.serving.client.parity import run_served_parity
from fmnist.serving.server.process import start_server
from fmnist.serving.wire import messages as pb
from fmnist.serving.wire.prediction_log import PredictionLogWriter, prediction_log
from fmnist.serving.wire.tensor_proto import to_tensor_proto


def write_log(client: GrpcClient, model: str, images, path: Path) -> Path:
    """One logged Predict per image, answered by the server, as request logging writes them."""
    path.unlink(missing_ok=True)
    with PredictionLogWriter(path) as writer:
        for image in images:
            request = pb.PredictRequest()
            request.model_spec.name = model
            request.inputs["images"].CopyFrom(to_tensor_proto(image[None]))
            writer.write(prediction_log(request, client.call("Predict", request)))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/replay"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model_dir = args.bundle.resolve().parent
    model = model_dir.name
    test = dataset.load_test(args.data_dir)
    images = test.images[: args.requests]
    server = start_server(
        *("--model_name", model, "--model_base_path", str(model_dir)), log_dir=args.out / "logs"
    )
    times: dict[str, list[float]] = {"parity": [], "replay": [], "replay+latency": []}
    try:
        client = GrpcClient(server.grpc_target, model, timeout=60)
        log_path = write_log(client, model, images, args.out / "requests.tfrecord")
        endpoint = Endpoint(client, model)
        for _ in range(args.rounds):
            start = time.perf_counter()
            parity = run_served_parity(client, args.bundle, args.data_dir)
            times["parity"].append(time.perf_counter() - start)
            for name, samples in (("replay", 0), ("replay+latency", 200)):
                start = time.perf_counter()
                result = replay(
                    RequestLog([log_path], model),
                    endpoint,
                    Target(),
                    options=ReplayOptions(latency_samples=samples),
                )
                times[name].append(time.perf_counter() - start)
                assert result.agreement == 1.0 and result.answers == len(images), result
            assert parity.agreement == 1.0
        client.close()
    finally:
        server.stop()
    medians = {name: statistics.median(values) for name, values in times.items()}
    rates = {
        "parity": len(test.labels) / medians["parity"],
        "replay": len(images) / medians["replay"],
        "replay+latency": len(images) / medians["replay+latency"],
    }
    rows = [
        ("parity, 10,000 test images", medians["parity"], rates["parity"], 1.0),
        *(
            (f"{name}, {len(images):,} logged requests", medians[name], rates[name],
             rates[name] / rates["parity"])
            for name in ("replay", "replay+latency")
        ),
    ]  # fmt: skip
    print(
        f"{'gRPC, median of ' + str(args.rounds):<42} {'s':>7} {'images/s':>10} {'of parity':>10}"
    )
    for name, seconds, rate, share in rows:
        print(f"{name:<42} {seconds:>7.3f} {rate:>10,.0f} {share:>10.0%}")
    report = {
        "bundle": str(args.bundle),
        "requests": len(images),
        "rounds": args.rounds,
        "seconds": times,
        "median_s": medians,
        "images_per_s": rates,
        "replay_share_of_parity": rates["replay"] / rates["parity"],
        "replay_with_latency_share_of_parity": rates["replay+latency"] / rates["parity"],
    }
    (args.out / "bench_replay.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out / 'bench_replay.json'}")


if __name__ == "__main__":
    main()
