"""`fmnist pipeline`: the main job, end to end (the work is in pipeline/run.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fmnist.errors import EXIT_OK, EXIT_PARITY_FAILED, UserError
from fmnist.export.config import check_model_name
from fmnist.parity import Tolerance, add_tolerance_args, check_tolerance_args


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `fmnist pipeline` to the `fmnist` parser."""
    parser = subparsers.add_parser(
        "pipeline",
        help="train, evaluate, export, serve, check parity (gRPC, REST, edge) and report",
        description="Run the whole pipeline: train the default CNN and evaluate it, export the "
        "SavedModel version, int8/float TFLite and manifest, serve it with `fmnist serve` on "
        "free loopback ports, run the gRPC, REST and edge parity checks, measure latency, and "
        "write DIR/report.html, report.md and report.json. Exit 1 if a parity check fails.",
    )
    arg = parser.add_argument
    arg("--data-dir", type=Path, help="Fashion-MNIST directory (default $FMNIST_DATA_DIR)")
    arg("--out", type=Path, required=True, metavar="DIR", help="output directory")
    arg(
        "--name",
        help="model name in TF Serving (default: fashion_mnist for Fashion-MNIST, else the data "
        "folder's or file's name)",
    )
    arg("--quick", action="store_true", help="small model on a subset: about a minute")
    arg("--config", type=Path, metavar="FILE", help="TOML/JSON training config overrides")
    arg("--download", action="store_true", help="fetch the data through Keras if missing")
    arg("--overwrite", action="store_true", help="replace the outputs of an earlier run in DIR")
    arg(
        "--flip-average",
        action="store_true",
        help="export with test-time flip averaging (as `fmnist export --flip-average`): "
        "every model averages the image and its mirror image; the report's float figures "
        "are the averaged model's",
    )
    add_tolerance_args(parser, defaults=Tolerance())
    arg("--latency-runs", type=int, help="requests per latency measurement (200; quick 50)")
    parser.set_defaults(handler=_pipeline, precheck=_precheck)


def _precheck(args: argparse.Namespace) -> None:
    """Flag values the pipeline refuses, checked before TensorFlow is imported."""
    check_tolerance_args(args)
    if args.name is not None:
        check_model_name(args.name)
    if args.latency_runs is not None and args.latency_runs < 1:
        raise UserError(f"--latency-runs must be >= 1, got {args.latency_runs}")


def _pipeline(args: argparse.Namespace) -> int:
    from fmnist.pipeline.config import PipelineConfig
    from fmnist.pipeline.run import prepare_out_dir, run_pipeline

    config = PipelineConfig(
        data_dir=args.data_dir,
        out_dir=args.out,
        model_name=args.name,
        quick=args.quick,
        train_config=args.config,
        tolerance=Tolerance().with_args(args),
        flip_average=args.flip_average,
        latency_runs=args.latency_runs or (50 if args.quick else 200),
        download=args.download,
    )
    prepare_out_dir(args.out, args.overwrite)
    result = run_pipeline(config, progress=lambda line: print(line, flush=True))
    report = result.report
    print(
        f"{'PASS' if result.passed else 'FAIL'}: pipeline finished in "
        f"{report['total_seconds']:.0f} s; float test accuracy "
        f"{report['float_metrics']['accuracy']:.4f}, int8 {report['int8_metrics']['accuracy']:.4f}"
    )
    print(f"report: {result.paths['html']}")
    return EXIT_OK if result.passed else EXIT_PARITY_FAILED
