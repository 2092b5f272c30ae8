"""int8 calibration choices: how many images, per-channel vs per-tensor weights, and where
the int8 model's disagreement with the float model comes from.

    python benchmarks/bench_calibration.py --run runs/bench/train/run [--sizes 100 500 2000]
        [--seeds 42 43 44] [--export-only] [--compare-bias-correction] [--per-layer]

Converts the run's model to full-integer int8 the way `fmnist export` does (stratified, so
class-balanced, images from the training part of the run's own split, plus an all-0 and an
all-255 image), once per calibration size and weight granularity (both with export's
equalization of ReLU output ranges, export/equalize.py, and its bias correction,
export/bias_correction.py), runs each with the edge runner on
the 10,000 test images and compares it with the float model: top-1 agreement, accuracy
drop, the worst class's recall change, and how many images' two best scores tie (argmax
then takes the lower class index) with the agreement if such a tie counted as agreeing.
Then, at the first calibration size: export's int8 on the other calibration samples
(`--seeds`; which images calibrate moves agreement by ~0.1 pp), the same at other
equalization strengths (alpha 0 = none) with a mean and range per strength, the same
without bias correction (`--compare-bias-correction` adds only these rows to --export-only), and two
quantizations export does not ship (first seed): int8 weights with float activations
("dynamic-range") and int16 activations ("16x8"), which split the int8 model's
disagreement into its weights' and its activations' share. `--per-layer` instead asks
which layer's int8 costs the agreement: export's conversion (first size and seed, float
input and output) with each weighted layer (and the softmax) kept in float in turn, and
with only that one in int8 (TFLite's QuantizationDebugger, denylisted nodes). Latency
is the median of 10 single-thread runs of a 64-image batch. Prints a table and writes
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
UNCORRECTED = "per-channel, no bias correction"  # export's conversion before bias correction
LAYER_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "SOFTMAX")  # --per-layer


def per_layer_models(converter) -> list[tuple[str, bytes]]:
    """The converter's int8 model, then each LAYER_OPS op kept in float and alone in int8."""
    import tensorflow as tf

    debugging = tf.lite.experimental
    debugger = debugging.QuantizationDebugger(
        converter=converter, debug_dataset=converter.representative_dataset
    )
    interpreter = tf.lite.Interpreter(model_content=debugger.calibrated_model)
    tensors = interpreter.get_tensor_details()
    layers = []  # (a readable label, the op's output tensor: how the debugger names nodes)
    for op in interpreter._get_ops_details():
        if op["op_name"] in LAYER_OPS:
            node = tensors[op["outputs"][0]]["name"]  # e.g. "model/block1_relu1_1/Relu;..."
            layers.append((f"{op['op_name']} {'/'.join(node.split(';')[0].split('/')[-2:])}", node))

    def quantized(denylisted: list[str]) -> bytes:
        debugger.options = debugging.QuantizationDebugOptions(denylisted_nodes=denylisted)
        return debugger.get_nondebug_quantized_model()

    models = [("all int8 (float input and output)", quantized([]))]
    for label, node in layers:
        models.append((f"{label} in float", quantized([node])))
        models.append((f"only {label} in int8", quantized([n for _, n in layers if n != node])))
    return models


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
    parser.add_argument(
        "--compare-bias-correction",
        action="store_true",
        help="with --export-only: also convert without bias correction, per calibration seed",
    )
    parser.add_argument(
        "--per-layer",
        action="store_true",
        help="only the per-layer rows: which layer's int8 costs agreement (first size and "
        "seed; with --compare-bias-correction also without bias correction)",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench/calibration"))
    args = parser.parse_args()

    from fmnist.dataset import subset
    from fmnist.export import tflite
    from fmnist.export.config import Int8Options
    from fmnist.preprocessing import predict_probabilities
    from fmnist.run_dir import RunDir

    # The run's own split, as export uses: calibration images come from its training part,
    # never from the validation images a run with another seed held out.
    run = RunDir(args.run).check()
    data = run.load_data(args.data_dir)
    model = run.load_model()
    contract = run.contract()  # calibration images go in as uint8 [N, H, W, C]
    reference = predict_probabilities(model, data.test.images)
    first, size = args.seeds[0], args.sizes[0]
    converted: dict[str, bytes] = {}
    if args.per_layer:
        calibration = subset(data.train, size, seed=first).images[..., None]
        for corrected in (True, False) if args.compare_bias_correction else (True,):
            options = Int8Options(bias_correction=corrected)  # float input and output
            converter = tflite._int8_converter(model, calibration, contract, options)
            suffix = "" if corrected else ", no bias correction"
            converted |= {f"{n}{suffix}": c for n, c in per_layer_models(converter)}
        plan = [(name, size, first) for name in converted]
    elif args.export_only:
        plan = [("per-channel", size, seed) for seed in args.seeds]
        if args.compare_bias_correction:
            plan += [(UNCORRECTED, size, seed) for seed in args.seeds]
    else:
        plan = [(w, n, first) for w in ("per-channel", "per-tensor") for n in args.sizes]
        plan += [("per-channel", size, seed) for seed in args.seeds[1:]]
        plan += [
            (f"per-channel, alpha {a:g}", size, seed) for a in OTHER_ALPHAS for seed in args.seeds
        ]
        plan += [(UNCORRECTED, size, seed) for seed in args.seeds]
        plan += [(variant, size, first) for variant in VARIANTS]

    def convert(name: str, calibration: np.ndarray) -> bytes:
        if name in converted:
            return converted[name]
        if name in VARIANTS:
            return tflite.convert_variant(model, calibration, contract, name)
        if name == UNCORRECTED:
            return tflite.convert_int8(
                model, calibration, contract, Int8Options(bias_correction=False)
            )
        if name.startswith("per-channel, alpha "):
            alpha = float(name.rsplit(" ", 1)[1])
            return tflite.convert_int8(
                model, calibration, contract, Int8Options(equalize_alpha=alpha)
            )
        per_channel = name == "per-channel"
        options = Int8Options(per_channel=per_channel)
        return tflite.convert_int8(model, calibration, contract, options)

    rows = []
    print(
        "| quantization | calibration images | seed | agreement | accuracy drop pp "
        "| worst class (pp) | top-score ties | agreement counting ties | batch-64 ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, size, seed in plan:
        calibration = subset(data.train, size, seed=seed).images[..., None]
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
    # Means over the calibration samples: export's strength (the per-channel rows) and others.
    if len(args.seeds) > 1 and not args.per_layer:
        names = ["per-channel"]
        if not args.export_only:
            names += [f"per-channel, alpha {a:g}" for a in OTHER_ALPHAS]
        if not args.export_only or args.compare_bias_correction:
            names.append(UNCORRECTED)
        for name in names:
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
