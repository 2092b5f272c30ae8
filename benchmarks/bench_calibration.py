"""int8 calibration choices: how many images, and per-channel vs per-tensor weights.

    python benchmarks/bench_calibration.py --run runs/bench/train/run [--sizes 100 500 2000]

Converts the run's model to full-integer int8 the way `fmnist export` does (stratified,
so class-balanced, training images plus an all-0 and an all-255 image), once per
calibration size and weight granularity, runs each with the edge runner on the 10,000
test images and compares it with the float model: top-1 agreement, accuracy drop and the
worst class's recall change. Prints a table and writes OUT/bench_calibration.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a training run directory")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 2000])
    parser.add_argument("--out", type=Path, default=Path("runs/bench/calibration"))
    args = parser.parse_args()

    from fmnist.edge.classifier import Classifier
    from fmnist.export import tflite
    from fmnist.parity import Tolerance, compare
    from fmnist.train import data as train_data
    from fmnist.train.evaluate import load_run_model, predict_probabilities

    data = train_data.load(args.data_dir)
    model = load_run_model(args.run)
    reference = predict_probabilities(model, data.test.images)
    rows = []
    print("| weights | calibration images | agreement | accuracy change pp | worst class (pp) |")
    print("|---|---|---|---|---|")
    for per_channel in (True, False):
        for size in args.sizes:
            calibration = train_data.subset(data.train, size, seed=42).images
            content = tflite.convert_int8(model, calibration, per_channel=per_channel)
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "int8.tflite"
                path.write_bytes(content)
                probabilities = Classifier(path).predict_proba(data.test.images, batch_size=1000)
            result = compare(
                reference, probabilities, data.test.labels, data.class_names, Tolerance()
            ).to_dict()
            worst = min(result["per_class"], key=lambda c: c["delta_pp"])
            rows.append(
                {
                    "weights": "per-channel" if per_channel else "per-tensor",
                    "calibration_images": size,
                    "agreement": result["agreement"],
                    "accuracy_drop_pp": result["accuracy_drop_pp"],
                    "worst_class": worst["class_name"],
                    "worst_class_recall_pp": worst["delta_pp"],
                }
            )
            row = rows[-1]
            print(
                f"| {row['weights']} | {size} | {row['agreement'] * 100:.2f}% "
                f"| {row['accuracy_drop_pp']:+.2f} | {row['worst_class']} "
                f"{row['worst_class_recall_pp']:+.1f} |",
                flush=True,
            )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_calibration.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {args.out / 'bench_calibration.json'}")


if __name__ == "__main__":
    main()
