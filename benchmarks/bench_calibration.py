"""int8 calibration choices: how many images, per-channel vs per-tensor weights, and where
the int8 model's disagreement with the float model comes from.

    python benchmarks/bench_calibration.py --run runs/bench/train/run [--sizes 100 500 2000]
        [--seeds 42 43 44] [--export-only]

Converts the run's model to full-integer int8 the way `fmnist export` does (stratified, so
class-balanced, images from the training part of the run's own split, plus an all-0 and an
all-255 image), once per calibration size and weight granularity (both with export's
equalization of ReLU output ranges, export/equalize.py), runs each with the edge runner on
the 10,000 test images and compares it with the float model: top-1 agreement, accuracy
drop, the worst class's recall change, and how many images' two best scores tie (argmax
then takes the lower class index) with the agreement if such a tie counted as agreeing.
Then, at the first calibration size: export's int8 on the other calibration samples
(`--seeds`; which images calibrate moves agreement by ~0.1 pp), the same at other
equalization strengths (alpha 0 = none) with a mean and range per strength, and two
quantizations export does not ship (first seed): int8 weights with float activations
("dynamic-range") and int16 activations ("16x8"), which split the int8 model's
disagreement into its weights' and its activations' share. Latency is the median of 10
single-thread runs of a 64-image batch. Prints a table and writes
OUT/bench_calibration.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

LATENCY_BATCH, LATENCY_RUNS = 64, 10
VARIANTS = ("dynamic-range", "16x8")  # not shipped: where int8 disagreement comes from
OTHER_ALPHAS = (0.0, 0.75, 1.0)  # equalization strengths beside export's default


def measure(content: bytes, reference: np.ndarray, data) -> dict:
    """Parity figures and batch latency of one converted model on the test images."""
    from fmnist.edge.classifier import Classifier
    from fmnist.parity import Tolerance, compare

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(content)
        classifier = Classifier(path, num_threads=1)
        probabilities = classifier.predict_proba(data.test.images, batch_size=1000)
        batch = data.test.images[:LATENCY_BATCH]
        classifier.predict_proba(batch, batch_size=LATENCY_BATCH)  # warm-up: allocation
        times = []
        for _ in range(LATENCY_RUNS):
            start = time.perf_counter()
            classifier.predict_proba(batch, batch_size=LATENCY_BATCH)
            times.append(time.perf_counter() - start)
    result = compare(reference, probabilities, data.test.labels, data.class_names, Tolerance())
    worst = result.worst_class
    top = probabilities.max(axis=1)
    tied = (probabilities == top[:, None]).sum(axis=1) > 1
    # The float model's class among the tied best scores: agreement but for the tie.
    float_class_on_top = probabilities[np.arange(len(top)), reference.argmax(axis=1)] == top
    return {
        "agreement": result.agreement,
        "accuracy_drop_pp": result.accuracy_drop_pp,
        "worst_class": worst["class_name"],
        "worst_class_recall_pp": worst["delta_pp"],
        "top_score_ties": int(tied.sum()),
        "agreement_counting_ties": float(float_class_on_top.mean()),
        "batch64_ms": 1000 * statistics.median(times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a training run directory")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 2000])
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[42],
        help="calibration samples for the equalization rows (agreement moves by ~0.1 pp "
        "between samples of one size: compare strengths over several)",
    )
    parser.add_argument(
        "--export-only",
        action="store_true",
        help="only export's conversion, once per calibration seed at the first size "
        "(3 conversions instead of 15 with three seeds: a few minutes per model)",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench/calibration"))
    args = parser.parse_args()

    from fmnist.export import tflite
    from fmnist.train import data as train_data
    from fmnist.train.evaluate import load_run_model, predict_probabilities
    from fmnist.train.train import CONFIG_FILE

    # The run's own split, as export uses: calibration images come from its training part,
    # never from the validation images a run with another seed held out.
    run_config = json.loads((args.run / CONFIG_FILE).read_text())
    data = train_data.load(
        args.data_dir,
        val_fraction=run_config.get("val_fraction", 0.1),
        seed=run_config.get("seed", 42),
    )
    model = load_run_model(args.run)
    reference = predict_probabilities(model, data.test.images)
    first, size = args.seeds[0], args.sizes[0]
    if args.export_only:
        plan = [("per-channel", size, seed) for seed in args.seeds]
    else:
        plan = [(w, n, first) for w in ("per-channel", "per-tensor") for n in args.sizes]
        plan += [("per-channel", size, seed) for seed in args.seeds[1:]]
        plan += [
            (f"per-channel, alpha {a:g}", size, seed) for a in OTHER_ALPHAS for seed in args.seeds
        ]
        plan += [(variant, size, first) for variant in VARIANTS]

    def convert(name: str, calibration: np.ndarray) -> bytes:
        if name in VARIANTS:
            return tflite.convert_variant(model, calibration, name)
        if name.startswith("per-channel, alpha "):
            alpha = float(name.rsplit(" ", 1)[1])
            return tflite.convert_int8(model, calibration, equalize_alpha=alpha)
        return tflite.convert_int8(model, calibration, per_channel=name == "per-channel")

    rows = []
    print(
        "| quantization | calibration images | seed | agreement | accuracy drop pp "
        "| worst class (pp) | top-score ties | agreement counting ties | batch-64 ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, size, seed in plan:
        calibration = train_data.subset(data.train, size, seed=seed).images
        row = {"quantization": name, "calibration_images": size, "calibration_seed": seed}
        row.update(measure(convert(name, calibration), reference, data))
        rows.append(row)
        print(
            f"| {name} | {size} | {seed} | {row['agreement'] * 100:.2f}% "
            f"| {row['accuracy_drop_pp']:+.2f} | {row['worst_class']} "
            f"{row['worst_class_recall_pp']:+.1f} | {row['top_score_ties']} "
            f"| {row['agreement_counting_ties'] * 100:.2f}% | {row['batch64_ms']:.1f} |",
            flush=True,
        )
    if len(args.seeds) > 1:  # export's strength (the per-channel rows) and the others
        alphas = () if args.export_only else OTHER_ALPHAS
        for name in ["per-channel", *(f"per-channel, alpha {a:g}" for a in alphas)]:
            found = [
                r["agreement"] * 100
                for r in rows
                if r["quantization"] == name and r["calibration_images"] == size
            ]
            print(
                f"{name}: agreement over {len(found)} calibration samples of {size}: mean "
                f"{statistics.mean(found):.2f}%, range {min(found):.2f}-{max(found):.2f}%"
            )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_calibration.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {args.out / 'bench_calibration.json'}")


if __name__ == "__main__":
    main()
