"""Training from a folder of PNGs against the IDX arrays, and memory at two dataset sizes.

    python benchmarks/bench_streaming.py --pngs /tmp/fmnist-png [--steps 128] [--rounds 3]

Writes Fashion-MNIST as PNG folders (first run only: PNGS/full with the 60,000 training and
10,000 test images, PNGS/quarter with hard links to a quarter of each class), then:

- throughput: the default model (TrainConfig()) trains `steps` augmented batches per round
  from the IDX files and from PNGS/full, rounds interleaved in one process; images/s at
  each path's median step time, and the folder's ratio to IDX (target >= 0.80);
- memory: a fresh process per dataset (IDX, PNGS/quarter, PNGS/full) opens it and trains
  `steps` batches; its peak RSS (ru_maxrss) should not grow with the number of images.

Writes benchmarks/bench_streaming.json (or --out) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from fmnist import dataset as fashion
from fmnist.contract import FASHION_MNIST_CLASSES
from fmnist.data import open_dataset

OUT = Path(__file__).resolve().parent / "bench_streaming.json"


def write_pngs(root: Path, data_dir: Path | None) -> None:
    """PNGS/full/{train,test}/<label>/<index>.png, and PNGS/quarter: hard links to the first
    quarter of each class folder. Class names in classes.txt (a "/" cannot be in a folder)."""
    from PIL import Image

    full = root / "full"
    for part, split in (
        ("train", fashion.load_train(data_dir)),
        ("test", fashion.load_test(data_dir)),
    ):
        for label in range(10):
            (full / part / str(label)).mkdir(parents=True, exist_ok=True)
        for index, (image, label) in enumerate(zip(split.images, split.labels, strict=True)):
            Image.fromarray(image).save(full / part / str(label) / f"{index:05d}.png")
        for folder in sorted((full / part).iterdir()):
            files = sorted(folder.iterdir())
            target = root / "quarter" / part / folder.name
            target.mkdir(parents=True, exist_ok=True)
            for path in files[: len(files) // 4]:
                os.link(path, target / path.name)
    for tree in (full, root / "quarter"):
        (tree / "classes.txt").write_text("\n".join(FASHION_MNIST_CLASSES) + "\n")


def _timer(durations: list[float]):
    """A callback appending each step's share of its call into the graph (Keras calls it
    once per steps_per_execution steps)."""
    import keras

    class StepTimer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.start, self.first = time.perf_counter(), batch

        def on_train_batch_end(self, batch, logs=None):
            steps = batch - self.first + 1
            durations.extend([(time.perf_counter() - self.start) / steps] * steps)

    return StepTimer()


def _trainer(path: Path | None, steps: int):
    """(a function training `steps` batches and returning its step times, open seconds)."""
    import math

    from fmnist.train.config import TrainConfig
    from fmnist.train.data import training_dataset
    from fmnist.train.train import compile_model, resolve_precision, seed_everything

    config = TrainConfig()
    seed_everything(config.seed)
    start = time.perf_counter()
    data = open_dataset(path, val_fraction=config.val_fraction, seed=config.seed)
    opened = time.perf_counter() - start
    stream, images = training_dataset(data, config)
    precision = resolve_precision(config.precision)
    model = compile_model(config, math.ceil(images / config.batch_size), precision, data.contract)
    model.fit(stream.take(2 * config.steps_per_execution), verbose=0)  # trace outside the timing

    def run() -> list[float]:
        durations: list[float] = []
        model.fit(stream.take(steps), verbose=0, callbacks=[_timer(durations)])
        return durations

    return run, opened, data


def throughput(idx_dir: Path | None, folder: Path, steps: int, rounds: int) -> dict:
    runs = {"idx": _trainer(idx_dir, steps), "folder": _trainer(folder, steps)}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, (run, _, _) in runs.items():
            times[name] += run()
    batch = 128
    rows = {
        name: {
            "dataset": str(data.path),
            "train_images": data.size("train"),
            "open_s": round(opened, 2),
            "median_step_s": round(statistics.median(times[name]), 5),
            "images_per_s": round(batch / statistics.median(times[name]), 1),
        }
        for name, (_, opened, data) in runs.items()
    }
    rows["folder_vs_idx"] = round(rows["folder"]["images_per_s"] / rows["idx"]["images_per_s"], 3)
    return rows


def peak_rss(path: Path | None, steps: int) -> dict:
    """Open and train in a fresh process (this script's --memory-of); its peak RSS."""
    command = [sys.executable, __file__, "--memory-of", str(path or ""), "--steps", str(steps)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def _memory_of(path: str, steps: int) -> None:
    run, _, data = _trainer(Path(path) if path else None, steps)
    run()
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork+exec.
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    peak = int(status["VmHWM"].split()[0]) / 1024  # kB
    print(
        json.dumps(
            {"kind": data.kind, "train_images": data.size("train"), "peak_rss_mb": round(peak)}
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pngs", type=Path, help="where the PNG folders go")
    parser.add_argument("--data-dir", type=Path, help="Fashion-MNIST's IDX files")
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--memory-of", metavar="DATASET", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_of is not None:
        return _memory_of(args.memory_of, args.steps)
    if args.pngs is None:
        parser.error("--pngs is required")
    if not (args.pngs / "full").is_dir():
        start = time.perf_counter()
        write_pngs(args.pngs, args.data_dir)
        print(f"wrote the PNGs in {time.perf_counter() - start:.0f} s", flush=True)
    speed = throughput(args.data_dir, args.pngs / "full", args.steps, args.rounds)
    memory = [
        peak_rss(p, args.steps) for p in (args.data_dir, args.pngs / "quarter", args.pngs / "full")
    ]
    result = {
        "steps": args.steps,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "throughput": speed,
        "memory": memory,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("| input | train images | open s | img/s (median step) |")
    print("|---|---|---|---|")
    for name in ("idx", "folder"):
        row = speed[name]
        print(f"| {name} | {row['train_images']:,} | {row['open_s']} | {row['images_per_s']:.0f} |")
    print(f"folder / idx: {speed['folder_vs_idx']:.2f}")
    print("| kind | train images | peak RSS MB |")
    print("|---|---|---|")
    for row in memory:
        print(f"| {row['kind']} | {row['train_images']:,} | {row['peak_rss_mb']} |")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
