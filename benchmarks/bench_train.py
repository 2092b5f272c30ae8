"""Train the default config from scratch on the full data: accuracy, F1, size and speed.

    python benchmarks/bench_train.py [--data-dir D] [--out runs/bench/train] [--epochs N]

Prints one table row and writes OUT/bench_train.json; the run directory OUT/run is what
benchmarks/bench_export.py exports. Target (issue 14): test accuracy >= 94.6% with
training under 20 minutes on 2 CPU cores (run it alone on the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from fmnist.dataset import load_splits
from fmnist.train.config import load_config
from fmnist.train.evaluate import evaluate_run
from fmnist.train.train import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/train"))
    parser.add_argument("--config", type=Path, help="TOML/JSON overrides of the default config")
    parser.add_argument("--epochs", type=int)
    args = parser.parse_args()

    config = load_config(args.config, epochs=args.epochs)
    data = load_splits(args.data_dir, val_fraction=config.val_fraction, seed=config.seed)
    run_dir = args.out / "run"
    start = time.perf_counter()
    result = train(config, data, run_dir, verbose=2)
    metrics = evaluate_run(run_dir, data.data_dir)
    row = {
        "test_accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "parameters": int(result.model.count_params()),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "train_wall_time_s": round(result.wall_time_s, 1),
        "images_per_s": round(result.images_per_s, 1),
        "total_s": round(time.perf_counter() - start, 1),
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "config": config.to_dict(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_train.json").write_text(json.dumps(row, indent=2) + "\n")
    header = ["test acc", "macro F1", "params", "epochs", "train s", "img/s"]
    values = [
        f"{row['test_accuracy']:.4f}",
        f"{row['macro_f1']:.4f}",
        f"{row['parameters']:,}",
        str(row["epochs_run"]),
        f"{row['train_wall_time_s']:.0f}",
        f"{row['images_per_s']:.0f}",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    print("| " + " | ".join(values) + " |")
    print(f"wrote {args.out / 'bench_train.json'}")


if __name__ == "__main__":
    main()
