"""Subcommands of this stage (registered on the `fmnist` command): `fmnist export`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fmnist.export.config import DEFAULT_EQUALIZE_ALPHA
from fmnist.parity import Tolerance, add_tolerance_args, check_tolerance_args


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands to the `fmnist` parser."""
    parser = subparsers.add_parser(
        "export",
        help="publish a run as a TF Serving SavedModel version, int8/float TFLite and manifest",
        description="Write version N of model NAME under BASE/NAME/N (SavedModel with a uint8 "
        "'images' signature and warmup requests, int8 and float32 TFLite, float reference "
        "outputs, manifest.json) and update BASE/models.config. The version appears "
        "atomically, only after both TFLite models pass the parity tolerance.",
    )
    arg = parser.add_argument
    arg("run_dir", type=Path, metavar="RUN", help="training run directory (has model.keras)")
    arg("--base-path", type=Path, required=True, metavar="B", help="TF Serving base path")
    arg("--name", default="fashion_mnist", help="model name (default fashion_mnist)")
    arg("--version", type=int, help="version number (default: one above the highest)")
    arg("--label", help="version label to point at this version in models.config, e.g. stable")
    arg("--data-dir", type=Path, help="Fashion-MNIST directory (default: the run's)")
    arg("--calibration-size", type=int, default=500, help="int8 calibration images (500)")
    arg(
        "--equalize-alpha",
        type=float,
        default=DEFAULT_EQUALIZE_ALPHA,
        metavar="A",
        help="int8: rescale each ReLU output's channels toward the largest one's range by "
        f"(max/channel max)**A before calibration, 0 = off ({DEFAULT_EQUALIZE_ALPHA})",
    )
    arg(
        "--no-bias-correction",
        dest="bias_correction",
        action="store_false",
        help="int8: keep the biases as trained instead of subtracting the mean shift that "
        "rounding the weights to int8 causes on the calibration images",
    )
    arg(
        "--flip-average",
        action="store_true",
        help="test-time augmentation: every model of the bundle averages the probabilities "
        "of the image and its mirror image (two model runs per image: more accurate, up to "
        "~2x the latency; see docs/accuracy.md)",
    )
    add_tolerance_args(parser, defaults=Tolerance())
    arg("--num-versions", type=int, default=2, help="models.config: serve the latest N (2)")
    arg(
        "--serving-base-path",
        metavar="PATH",
        help="path of B as the server sees it, for models.config (e.g. /models in Docker; "
        "default: B's absolute path)",
    )
    arg(
        "--warmup-from",
        action="append",
        type=Path,
        default=[],
        metavar="LOGS",
        help="warm-up requests from TF Serving request logs (a file, directory, glob or "
        "filename prefix; repeatable) instead of synthetic ones: a sample of the logged "
        "Predict requests that fit the signature",
    )
    arg(
        "--warmup-count",
        type=int,
        default=100,
        metavar="N",
        help="with --warmup-from: at most N warm-up requests (100; TF Serving reads <= 1000)",
    )
    arg(
        "--debug-quantization",
        action="store_true",
        help="always write the per-layer quantization report to RUN/quantization_debug",
    )
    parser.set_defaults(handler=_export, precheck=check_tolerance_args)


def _export(args: argparse.Namespace) -> int:
    from fmnist.export.config import ExportConfig, Int8Options

    config = ExportConfig(
        base_path=args.base_path,
        name=args.name,
        version=args.version,
        label=args.label,
        data_dir=args.data_dir,
        calibration_size=args.calibration_size,
        int8=Int8Options(
            equalize_alpha=args.equalize_alpha,
            bias_correction=args.bias_correction,
            flip_average=args.flip_average,
        ),
        tolerance=Tolerance().with_args(args),
        num_versions=args.num_versions,
        serving_base_path=args.serving_base_path,
        debug_quantization=args.debug_quantization,
        warmup_from=tuple(args.warmup_from),
        warmup_count=args.warmup_count,
    )
    from fmnist.export.export import export_run  # TensorFlow loads only when needed

    result = export_run(args.run_dir, config, progress=lambda line: print(line, flush=True))
    int8, float32 = (result.manifest.tflite(kind).bytes for kind in ("int8", "float32"))
    print(
        f"published {result.bundle_dir} (int8 TFLite {int8 / 1024:.0f} KiB = "
        f"{int8 / float32:.0%} of float32; {sum(result.timings.values()):.1f} s); "
        f"updated {result.models_config}",
        file=sys.stdout,
    )
    return 0
