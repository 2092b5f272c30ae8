"""Subcommands of this stage (registered on the `fmnist` command): `fmnist export`."""

from __future__ import annotations

import argparse
from pathlib import Path

from fmnist.contract import SCALINGS
from fmnist.errors import UserError
from fmnist.export.config import DEFAULT_EQUALIZE_ALPHA, DEFAULT_MODEL_NAME, model_name_from
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
    arg(
        "run_dir",
        type=Path,
        nargs="?",
        metavar="RUN",
        help="training run directory (has model.keras); or give --keras-model",
    )
    arg("--base-path", type=Path, required=True, metavar="B", help="TF Serving base path")
    _add_keras_model_args(parser)
    arg(
        "--name",
        help="model name (default fashion_mnist; with --keras-model the model file's name)",
    )
    arg("--version", type=int, help="version number (default: one above the highest)")
    arg("--label", help="version label to point at this version in models.config, e.g. stable")
    arg(
        "--data-dir",
        type=Path,
        help="data directory: IDX files, a folder per class or an .npz (default: the run's)",
    )
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
    arg(
        "--skip-int8",
        action="store_true",
        help="publish without the int8 TFLite model (for a model with ops int8 cannot run): "
        "model.tflite is then the float32 one",
    )
    parser.set_defaults(handler=_export, precheck=_precheck)


def _add_keras_model_args(parser: argparse.ArgumentParser) -> None:
    arg = parser.add_argument
    arg(
        "--keras-model",
        type=Path,
        metavar="FILE",
        help="a Keras classifier trained anywhere (.keras) instead of RUN; needs --data-dir "
        "and --scaling",
    )
    arg(
        "--scaling",
        choices=tuple(SCALINGS),
        help="with --keras-model, how the model expects pixels: "
        + "; ".join(f"{name}: {rule}" for name, rule in SCALINGS.items()),
    )
    arg(
        "--softmax",
        action="store_true",
        help="with --keras-model: the model answers logits; apply softmax to them",
    )


def _precheck(args: argparse.Namespace) -> None:
    """Refuse a wrong combination of RUN and --keras-model before any work."""
    check_tolerance_args(args)
    if (args.run_dir is None) == (args.keras_model is None):
        raise UserError("give either RUN or --keras-model FILE")
    if args.keras_model is None and (args.scaling or args.softmax):
        raise UserError("--scaling and --softmax are for --keras-model (a run has its contract)")
    if args.keras_model is not None and (args.scaling is None or args.data_dir is None):
        raise UserError("--keras-model needs --scaling and --data-dir")


def _config(args: argparse.Namespace):
    from fmnist.export.config import ExportConfig, Int8Options

    return ExportConfig(
        base_path=args.base_path,
        name=args.name or _default_name(args.keras_model),
        version=args.version,
        label=args.label,
        data_dir=args.data_dir,
        calibration_size=args.calibration_size,
        int8=Int8Options(
            equalize_alpha=args.equalize_alpha,
            bias_correction=args.bias_correction,
            flip_average=args.flip_average,
            # A model trained elsewhere may never have seen anything like an all-white image.
            input_pins="pixels" if args.keras_model is not None else "images",
        ),
        tolerance=Tolerance().with_args(args),
        num_versions=args.num_versions,
        serving_base_path=args.serving_base_path,
        debug_quantization=args.debug_quantization,
        warmup_from=tuple(args.warmup_from),
        warmup_count=args.warmup_count,
        skip_int8=args.skip_int8,
    )


def _export(args: argparse.Namespace) -> int:
    config = _config(args)
    from fmnist.export.export import export_keras_model, export_run  # TensorFlow loads here

    progress = lambda line: print(line, flush=True)  # noqa: E731
    if args.keras_model is not None:
        result = export_keras_model(
            args.keras_model,
            config,
            scaling=args.scaling,
            softmax=args.softmax,
            progress=progress,
        )
    else:
        result = export_run(args.run_dir, config, progress=progress)
    print(
        f"published {result.bundle_dir} ({_sizes(result)}; "
        f"{sum(result.timings.values()):.1f} s); updated {result.models_config}"
    )
    return 0


def _default_name(keras_model: Path | None) -> str:
    """fashion_mnist for a run; a user's model is named after its file."""
    if keras_model is None:
        return DEFAULT_MODEL_NAME
    return model_name_from(keras_model.stem)


def _sizes(result) -> str:
    kinds = result.manifest.tflite_kinds
    if "int8" not in kinds:
        return f"float32 TFLite {result.manifest.tflite('float32').bytes / 1024:.0f} KiB"
    int8, float32 = (result.manifest.tflite(kind).bytes for kind in ("int8", "float32"))
    return f"int8 TFLite {int8 / 1024:.0f} KiB = {int8 / float32:.0%} of float32"
