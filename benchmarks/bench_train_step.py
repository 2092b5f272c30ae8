"""Training throughput of config variants, measured side by side in one process.

    python benchmarks/bench_train_step.py [--steps 64] [--rounds 5] [--data-dir D]

Each variant (the default config in float32 and bfloat16, each also with one step per
call into the graph instead of 32 and with Keras' own batch norm instead of the fused
kernel, without dropout, and wider, narrower or deeper in bfloat16) trains the same
`steps` batches of real augmented images per round; rounds interleave the variants, so a
machine that speeds up or slows down affects all of them alike. Prints images/s at each
variant's median step time (steps, not rounds: see _StepTimer) and its ratio to the first
variant, and writes OUT/bench_train_step.json. Accuracy needs full runs: benchmarks/bench_train.py.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras

from fmnist.dataset import load_splits
from fmnist.train import data as train_data
from fmnist.train.config import TrainConfig
from fmnist.train.model import NUM_CLASSES
from fmnist.train.precision import cpu_prefers_bfloat16
from fmnist.train.train import compile_model, seed_everything

# name -> (config overrides, precision)
VARIANTS: dict[str, tuple[dict, str]] = {
    "float32": ({}, "float32"),
    "bfloat16": ({}, "bfloat16"),
    # One training step per call into the graph instead of the defaults' 32 (train/config.py).
    "bfloat16, one step per call": ({"steps_per_execution": 1}, "bfloat16"),
    "float32, one step per call": ({"steps_per_execution": 1}, "float32"),
    # Keras' own batch norm in training, before the fused kernel (train/model.py).
    "float32, Keras batch norm": ({"fused_batch_norm": False}, "float32"),
    "bfloat16, Keras batch norm": ({"fused_batch_norm": False}, "bfloat16"),
    "bfloat16, no dropout": ({"dropout": 0.0}, "bfloat16"),
    # Width and depth: their cost per step sets the epochs a fixed training budget allows.
    "bfloat16, width 24": ({"width": 24}, "bfloat16"),
    "bfloat16, width 48": ({"width": 48}, "bfloat16"),
    "bfloat16, 2 convs in block 1": ({"first_block_convs": 2}, "bfloat16"),
    "bfloat16, depth 4": ({"depth": 4}, "bfloat16"),
}


class _StepTimer(keras.callbacks.Callback):
    """Appends each training step's duration: a median of steps ignores the stalls of a
    few seconds this host sometimes shows between epochs, which a round's total would not.
    Keras calls it once per call into the graph, so a call's time is shared by its steps."""

    def __init__(self, durations: list[float]) -> None:
        super().__init__()
        self.durations = durations

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self.start = time.perf_counter()
        self.first_step = batch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        steps = batch - self.first_step + 1
        self.durations += [(time.perf_counter() - self.start) / steps] * steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument(
        "--steps", type=int, default=64, help="batches per round (rounded up to whole calls)"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=Path("runs/bench/train_step"))
    args = parser.parse_args()

    base = TrainConfig()
    seed_everything(base.seed)
    # Whole calls of the defaults' steps_per_execution: Keras times a short last call as a
    # full one.
    args.steps = math.ceil(args.steps / base.steps_per_execution) * base.steps_per_execution
    data = load_splits(args.data_dir, val_fraction=base.val_fraction, seed=base.seed)
    ds = train_data.make_dataset(
        data.train,
        batch_size=base.batch_size,
        num_classes=NUM_CLASSES,
        training=True,
        augment=base.augment,
        seed=base.seed,
    ).take(args.steps)
    # Cached once: rounds then time the training steps, not the shuffle buffer's refill.
    ds = ds.cache()
    for _ in ds:
        pass
    steps_per_epoch = math.ceil(len(data.train) / base.batch_size)
    models = {}
    for name in args.variants:
        overrides, precision = VARIANTS[name]
        model = compile_model(base.replace(**overrides), steps_per_epoch, precision)
        model.fit(ds.take(2), verbose=0)  # trace and build outside the timing
        models[name] = model

    steps: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            model.fit(ds, verbose=0, callbacks=[_StepTimer(steps[name])])

    first = statistics.median(steps[args.variants[0]])
    rows = []
    for name, times in steps.items():
        median = statistics.median(times)
        rows.append(
            {
                "variant": name,
                "parameters": int(models[name].count_params()),
                "median_step_s": round(median, 5),
                "median_images_per_s": round(base.batch_size / median, 1),
                "speed_vs_first": round(first / median, 3),
            }
        )
    result = {
        "steps": args.steps,
        "rounds": args.rounds,
        "batch_size": base.batch_size,
        "cpus": os.cpu_count(),
        "cpu_prefers_bfloat16": cpu_prefers_bfloat16(),
        "machine": platform.processor() or platform.machine(),
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_train_step.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"| variant | params | img/s (median step) | vs {args.variants[0]} |")
    print("|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['variant']} | {row['parameters']:,} | {row['median_images_per_s']:.0f} "
            f"| x{row['speed_vs_first']:.2f} |"
        )
    print(f"wrote {args.out / 'bench_train_step.json'}")


if __name__ == "__main__":
    main()
