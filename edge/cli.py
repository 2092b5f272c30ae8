"""The `fmnist-edge` command: classify images, benchmark a model, check parity. TF-free."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from fmnist.cli import check_output_file, run
from fmnist.errors import UserError
from fmnist.images import RESIZE_MODES
from fmnist.parity import add_tolerance_args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fmnist-edge",
        description="TFLite image classifier inference on CPUs and Raspberry Pis, without "
        "TensorFlow (ai-edge-litert, else tflite-runtime).",
        allow_abbrev=False,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    _add_classify(sub)

    bench = sub.add_parser("bench", help="benchmark a TFLite model (latency, throughput, memory)")
    bench.add_argument("model", metavar="MODEL", help="a .tflite file or a bundle directory")
    bench.add_argument("--runs", type=int, default=200, metavar="R")
    bench.add_argument("--batch", type=int, default=1, metavar="B")
    bench.add_argument("--kind", choices=("int8", "float32"), default="int8")
    bench.add_argument("--json", action="store_true")
    _add_runtime_args(bench)
    bench.set_defaults(handler=_bench)

    parity = sub.add_parser(
        "parity",
        help="compare the int8 model with the float reference on the bundle's test set",
        description="Exit 0 within tolerance, 1 outside it, 2 for usage errors.",
    )
    parity.add_argument("bundle", metavar="BUNDLE", type=Path)
    parity.add_argument(
        "--data-dir",
        metavar="D",
        help="the bundle's dataset: IDX files, a folder per class or an .npz "
        "(default: $FMNIST_DATA_DIR, Fashion-MNIST)",
    )
    add_tolerance_args(parity)
    parity.add_argument("--kind", choices=("int8", "float32"), default="int8")
    parity.add_argument("--json", type=Path, metavar="OUT", help="also write the result as JSON")
    _add_runtime_args(parity)
    parity.set_defaults(handler=_parity)
    return parser


def _add_classify(sub: argparse._SubParsersAction) -> None:
    classify = sub.add_parser(
        "classify",
        help="classify image files",
        description="Classify images (PNG/JPEG/BMP/GIF of any size or colour mode, .npy "
        "arrays or IDX files). Images are converted to the model's input: H x W, grayscale or "
        "RGB, as the bundle's manifest (or a bare .tflite's input tensor) says.",
    )
    classify.add_argument(
        "model", metavar="MODEL_OR_BUNDLE", help="an exported bundle directory, or a .tflite file"
    )
    classify.add_argument("images", nargs="*", metavar="IMAGE")
    classify.add_argument("--top-k", type=int, default=3, metavar="K")
    classify.add_argument("--json", action="store_true", help="print one JSON array")
    classify.add_argument(
        "--invert",
        action="store_true",
        help="invert image files first (dark item on a light background)",
    )
    classify.add_argument(
        "--resize",
        choices=RESIZE_MODES,
        default="pad",
        help="images of another size: keep the aspect ratio and pad with black (default), "
        "or stretch to the model's size",
    )
    _add_bare_model_args(classify)
    classify.add_argument(
        "--kind",
        choices=("int8", "float32"),
        default="int8",
        help="which model of a bundle to use (default int8)",
    )
    _add_runtime_args(classify)
    classify.set_defaults(handler=_classify)


def _add_bare_model_args(parser: argparse.ArgumentParser) -> None:
    """What a bare .tflite cannot say about itself (a bundle's manifest does)."""
    parser.add_argument(
        "--classes",
        type=Path,
        metavar="FILE",
        help="bare .tflite only: class names, one a line (default: numbered 0, 1, ...)",
    )
    parser.add_argument(
        "--scaling",
        choices=("unit", "symmetric", "raw"),
        help="bare .tflite only: how the model takes pixels: [0, 1], [-1, 1] or 0-255 "
        "(default: what a quantized input was made for, else [0, 1])",
    )


def _add_runtime_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, metavar="T", help="interpreter threads")
    parser.add_argument(
        "--runtime",
        choices=("litert", "tflite-runtime", "tensorflow"),
        help="force a runtime (default: the first installed)",
    )


def _positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise UserError(f"{name} must be >= 1, got {value}")


def _check_threads(value: int | None) -> None:
    from fmnist.edge.classifier import check_num_threads

    check_num_threads(value, "--threads")


def _classify(args: argparse.Namespace) -> int:
    from fmnist.edge.runtime import select_runtime
    from fmnist.images import load_inputs
    from fmnist.predictions import top_k_rows

    _positive("--top-k", args.top_k)
    _check_threads(args.threads)
    runtime = select_runtime(args.runtime)
    classifier = _classifier(args, runtime)
    names, images = load_inputs(
        args.images, classifier.contract, invert=args.invert, resize=args.resize
    )
    print(f"runtime: {runtime}", file=sys.stderr)
    probabilities = classifier.predict_proba(images)
    rows = top_k_rows(names, probabilities, classifier.class_names, args.top_k, decimals=6)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            best, *rest = row["predictions"]
            others = ", ".join(f"{p['class_name']} {p['probability']:.1%}" for p in rest)
            line = f"{row['path']}: {best['class_name']} {best['probability']:.1%}"
            print(f"{line}  ({others})" if others else line)
    return 0


def _classifier(args: argparse.Namespace, runtime):
    """The model to classify with: a bundle's (its contract) or a bare .tflite (its tensors,
    with --classes and --scaling)."""
    from fmnist.edge.classifier import Classifier, resolve_model
    from fmnist.edge.tensors import read_class_names

    resolved = resolve_model(args.model, args.kind)
    if resolved.manifest is not None and (args.classes or args.scaling):
        raise UserError(
            "--classes and --scaling are for a bare .tflite file; a bundle's manifest says both"
        )
    return Classifier(
        resolved.path,
        num_threads=args.threads,
        runtime=runtime,
        contract=resolved.contract,
        class_names=read_class_names(args.classes) if args.classes else None,
        scaling=args.scaling,
        probe=True,
    )


def _bench(args: argparse.Namespace) -> int:
    from fmnist.edge.bench import benchmark
    from fmnist.edge.classifier import resolve_model
    from fmnist.edge.runtime import select_runtime

    for name in ("--runs", "--batch"):
        _positive(name, getattr(args, name[2:]))
    _check_threads(args.threads)
    resolved = resolve_model(args.model, args.kind)
    result = benchmark(
        resolved.path,
        runtime=select_runtime(args.runtime),
        threads=args.threads,
        runs=args.runs,
        batch=args.batch,
        probe=True,
        contract=resolved.contract,
    )
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.table())
    return 0


def _parity(args: argparse.Namespace) -> int:
    from fmnist.edge.parity import run_parity
    from fmnist.edge.runtime import select_runtime
    from fmnist.manifest import load_manifest
    from fmnist.parity import check_tolerance_args, format_result

    check_tolerance_args(args)  # a bad flag is refused as the flag, before the bundle is read
    _check_threads(args.threads)
    if args.json:
        check_output_file(args.json, "--json")
    tolerance = load_manifest(args.bundle).tolerance.with_args(args)
    result = run_parity(
        args.bundle,
        args.data_dir,
        tolerance,
        kind=args.kind,
        num_threads=args.threads,
        runtime=select_runtime(args.runtime),
        probe=True,
    )
    print(format_result(result))
    if args.json:
        result.write_json(args.json)
    return result.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(args.handler, args, f"fmnist-edge {args.command}")


if __name__ == "__main__":
    sys.exit(main())
