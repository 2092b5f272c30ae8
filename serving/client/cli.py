"""`fmnist predict` and `fmnist parity`: query any TF Serving endpoint from the command line."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from fmnist.cli import check_output_file
from fmnist.errors import UserError
from fmnist.parity import add_tolerance_args, check_tolerance_args


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `predict` and `parity` to the `fmnist` parser."""
    predict = subparsers.add_parser(
        "predict",
        help="classify image files with a model served by TF Serving",
        description="Send image files (PNG/JPEG/BMP/GIF of any size, converted to the size "
        "and colour the served model's signature asks for; .npy/IDX arrays of that shape) to "
        "TF Serving and print the classes.",
    )
    _endpoint_args(predict)
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument(
        "--signature", default="serving_default", metavar="S", help="(default serving_default)"
    )
    predict.add_argument("--top-k", type=int, default=3, metavar="K")
    predict.add_argument("--invert", action="store_true", help="dark items on a light background")
    predict.add_argument(
        "--resize",
        choices=("pad", "stretch"),
        default="pad",
        help="images of another size: keep the aspect ratio and pad with black (default), "
        "or stretch to the model's size",
    )
    predict.add_argument(
        "--bundle",
        type=Path,
        metavar="PATH",
        help="the served model's bundle, for its class names (default: numbered)",
    )
    predict.add_argument("--json", action="store_true", help="print one JSON array")
    predict.set_defaults(handler=_predict)

    parity = subparsers.add_parser(
        "parity",
        help="check a served model against the float model on the bundle's test images",
        description="Send the test set to TF Serving and compare the answers with the float "
        "reference in the bundle's manifest. Exit 0 within tolerance, 1 outside it, 2 when "
        "it could not check.",
    )
    _endpoint_args(parity)
    parity.add_argument(
        "--bundle",
        type=Path,
        required=True,
        metavar="PATH",
        help="exported bundle (version directory) or model directory",
    )
    parity.add_argument(
        "--data-dir",
        type=Path,
        help="the bundle's dataset: IDX files, a folder per class or an .npz "
        "(default: $FMNIST_DATA_DIR, Fashion-MNIST)",
    )
    add_tolerance_args(parity)
    parity.add_argument("--json", type=Path, metavar="OUT", help="also write the result as JSON")
    parity.add_argument(
        "--wait",
        type=float,
        default=0,
        metavar="SECONDS",
        help="first wait up to SECONDS for the model to be AVAILABLE (e.g. in compose)",
    )
    parity.add_argument("--batch-size", type=int, default=256, metavar="B", help="(256)")
    parity.set_defaults(handler=_parity, precheck=_check_parity_flags)


def _endpoint_args(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--grpc", metavar="HOST:PORT", help="TF Serving gRPC endpoint")
    where.add_argument(
        "--rest", metavar="URL", help="TF Serving REST endpoint, e.g. localhost:8501"
    )
    parser.add_argument("--model-name", required=True, metavar="NAME")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--version", type=int, metavar="N")
    which.add_argument("--label", metavar="L")
    parser.add_argument(
        "--timeout", type=float, default=30.0, metavar="S", help="deadline per call (30)"
    )


def _check_seconds(flag: str, value: float, *, zero_ok: bool) -> None:
    """A duration must be a finite number (NaN would make a wait loop never end)."""
    if not (math.isfinite(value) and (value >= 0 if zero_ok else value > 0)):
        bound = ">= 0" if zero_ok else "> 0"
        raise UserError(f"{flag} must be a finite number of seconds {bound}, got {value}")


def _check_parity_flags(args: argparse.Namespace) -> None:
    """Flag values `fmnist parity` refuses, checked before TensorFlow is imported."""
    _check_seconds("--timeout", args.timeout, zero_ok=False)
    _check_seconds("--wait", args.wait, zero_ok=True)
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.json:
        check_output_file(args.json, "--json")
    check_tolerance_args(args)


def _client(args: argparse.Namespace):
    from fmnist.serving.client import GrpcClient, RestClient

    _check_seconds("--timeout", args.timeout, zero_ok=False)

    options = {"timeout": args.timeout, "batch_size": getattr(args, "batch_size", 256)}
    if args.grpc:
        return GrpcClient(args.grpc, args.model_name, **options)
    return RestClient(args.rest, args.model_name, **options)


def _predict(args: argparse.Namespace) -> int:
    from fmnist.images import load_inputs
    from fmnist.predictions import top_k_rows

    if args.top_k < 1:
        raise UserError("--top-k must be >= 1")
    class_names = _bundle_class_names(args.bundle)
    with _client(args) as client:
        wanted = client.image_input(
            version=args.version, label=args.label, signature=args.signature
        )
        names, images = load_inputs(
            args.images, wanted.image_shape(), invert=args.invert, resize=args.resize
        )
        prediction = client.predict(
            images, version=args.version, label=args.label, signature=args.signature
        )
    classes = prediction.probabilities.shape[1]
    if class_names is not None and len(class_names) != classes:
        raise UserError(
            f"{args.bundle}: names {len(class_names)} classes; the served model answers {classes}"
        )
    class_names = class_names or [str(i) for i in range(classes)]
    rows = top_k_rows(names, prediction.probabilities, class_names, args.top_k)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"answered by {args.model_name} version {prediction.model_version}")
    for row in rows:
        best = ", ".join(f"{p['class_name']} {p['probability']:.1%}" for p in row["predictions"])
        print(f"{row['path']}: {best}")
    return 0


def _bundle_class_names(bundle: Path | None) -> list[str] | None:
    """The class names of `--bundle` (a version directory, manifest, or model directory:
    its newest version), or None without one."""
    if bundle is None:
        return None
    from fmnist.layout import list_versions
    from fmnist.manifest import load_manifest
    from fmnist.serving.client.parity import is_bundle

    if not is_bundle(bundle) and bundle.is_dir() and list_versions(bundle):
        versions = list_versions(bundle)
        bundle = versions[max(versions)]
    return list(load_manifest(bundle).contract.class_names)


def _parity(args: argparse.Namespace) -> int:
    from fmnist.parity import format_result
    from fmnist.serving.client.parity import run_served_parity

    _check_parity_flags(args)
    if not args.bundle.exists():
        raise UserError(f"{args.bundle}: no such bundle or model directory")
    with _client(args) as client:
        if args.wait:
            client.wait_until_available(args.wait, version=args.version, label=args.label)
        result = run_served_parity(
            client,
            args.bundle,
            args.data_dir,
            version=args.version,
            label=args.label,
            max_accuracy_drop_pp=args.max_accuracy_drop,
            min_agreement=args.min_agreement,
            max_class_recall_drop_pp=args.max_class_recall_drop,
            batch_size=args.batch_size,
        )
    print(format_result(result))
    if args.json:
        result.write_json(args.json)
        print(f"wrote {args.json}", file=sys.stderr)
    return result.exit_code
