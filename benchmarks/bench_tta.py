"""Test-time flip averaging as an exported-graph variant: accuracy gained, latency paid.

    python benchmarks/bench_tta.py --run runs/bench/train/run [--out runs/bench/tta]

Writes the run's model twice with `write_saved_model` (plain, and wrapped by
`flip_averaged`: the mean of the image's and its mirror image's probabilities, as
`fmnist export --flip-average` ships it), scores both signatures
on the 10,000 test images, then times batch-1 and batch-64 calls of each, interleaved
round by round so that load on the machine hits both alike. Prints a table of test
accuracy and median latency with the ratio, and writes OUT/bench_tta.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a training run directory")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/tta"))
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()

    import tensorflow as tf

    from fmnist import dataset
    from fmnist.export.flip_average import flip_averaged
    from fmnist.export.saved_model import SIGNATURE, signature_outputs, write_saved_model
    from fmnist.run_dir import RunDir

    test = dataset.load_test(dataset.resolve_data_dir(args.data_dir))
    model = RunDir(args.run).load_model()
    variants = {"plain": False, "flip average": True}
    rows: dict[str, dict[str, float]] = {}
    calls = {}
    for name, flip in variants.items():
        path = args.out / name.replace(" ", "_")
        write_saved_model(flip_averaged(model) if flip else model, path)
        predicted = signature_outputs(path, test.images)["class_ids"]
        rows[name] = {"test_accuracy": float((predicted == test.labels).mean())}
        calls[name] = tf.saved_model.load(str(path)).signatures[SIGNATURE]

    for batch in (1, 64):
        images = tf.constant(test.images[:batch])
        times: dict[str, list[float]] = {name: [] for name in variants}
        for name in variants:  # warm up each graph before timing
            calls[name](images=images)
        for _ in range(args.rounds):
            for name in variants:
                start = time.perf_counter()
                calls[name](images=images)
                times[name].append(time.perf_counter() - start)
        for name in variants:
            rows[name][f"p50_ms_batch{batch}"] = statistics.median(times[name]) * 1e3

    print("| variant | test acc | p50 ms (batch 1) | p50 ms (batch 64) |")
    print("|---|---|---|---|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['test_accuracy']:.4f} | {row['p50_ms_batch1']:.2f} "
            f"| {row['p50_ms_batch64']:.2f} |"
        )
    ratios = {
        f"latency_ratio_batch{b}": rows["flip average"][f"p50_ms_batch{b}"]
        / rows["plain"][f"p50_ms_batch{b}"]
        for b in (1, 64)
    }
    gain = rows["flip average"]["test_accuracy"] - rows["plain"]["test_accuracy"]
    print(
        f"flip averaging: {gain * 100:+.2f} pp accuracy, "
        f"latency x{ratios['latency_ratio_batch1']:.2f} (batch 1), "
        f"x{ratios['latency_ratio_batch64']:.2f} (batch 64)"
    )
    result = {"run": str(args.run), "rounds": args.rounds, "variants": rows, **ratios}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_tta.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out / 'bench_tta.json'}")


if __name__ == "__main__":
    main()
