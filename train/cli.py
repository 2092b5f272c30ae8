"""`fmnist train`, `fmnist evaluate` and `fmnist tune`: argument parsing and progress only."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fmnist.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands to the `fmnist` parser."""
    data = subparsers.add_parser(
        "data",
        help="check a dataset (or download Fashion-MNIST)",
        description="Open the dataset in --data-dir (IDX files, a folder per class, or a .npz) "
        "and say what it holds; Fashion-MNIST's four files are verified against their SHA-256 "
        "sums. With --download, fetch Fashion-MNIST through Keras first.",
    )
    _add_data_args(data)
    data.set_defaults(handler=_data)

    train = subparsers.add_parser(
        "train",
        help="train the CNN and evaluate it on the test set",
        description="Train the CNN (built for the dataset's image size, channels and classes) "
        "with validation monitoring and early stopping, save the Keras model, its input "
        "contract and logs in RUN, then evaluate it on the test set.",
    )
    _add_data_args(train)
    train.add_argument(
        "--out", required=True, type=Path, metavar="RUN", help="run directory to create"
    )
    train.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="TOML or JSON file overriding TrainConfig fields",
    )
    train.add_argument("--epochs", type=int, help="override the configured number of epochs")
    train.add_argument("--seed", type=int, help="override the configured seed")
    train.add_argument(
        "--quick",
        action="store_true",
        help="small model on a 12k-image subset: under a minute, for smoke tests",
    )
    train.add_argument(
        "--strategy",
        choices=("mirrored", "multiworker"),
        help="tf.distribute strategy (multiworker reads TF_CONFIG)",
    )
    train.add_argument(
        "--cpu-devices",
        type=int,
        metavar="N",
        help="split the CPU into N logical devices (mirrored training without GPUs)",
    )
    train.add_argument("--overwrite", action="store_true", help="replace an existing run in RUN")
    train.set_defaults(handler=_train)

    evaluate = subparsers.add_parser(
        "evaluate",
        help="evaluate a run's model on the test set",
        description="Write metrics.json, the classification report and plots into RUN.",
    )
    evaluate.add_argument("run", type=Path, metavar="RUN", help="a run directory from `train`")
    evaluate.add_argument(
        "--data-dir", metavar="D", help="the run's dataset (default: the one the run used)"
    )
    evaluate.set_defaults(handler=_evaluate)

    tune = subparsers.add_parser(
        "tune",
        help="search learning rate, batch size and width on the validation split",
        description="A small Optuna search scored on validation accuracy; writes a results "
        "table and the best config (usable with `fmnist train --config`).",
    )
    _add_data_args(tune)
    tune.add_argument("--out", required=True, type=Path, metavar="DIR")
    tune.add_argument("--trials", type=int, help="number of trials (default 12, quick 3)")
    tune.add_argument("--epochs", type=int, help="epochs per trial (default 6, quick 1)")
    tune.add_argument("--config", type=Path, metavar="FILE", help="base config for every trial")
    tune.add_argument("--quick", action="store_true", help="a tiny search for smoke tests")
    tune.set_defaults(handler=_tune)


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        metavar="D",
        help="the dataset: four IDX files (Fashion-MNIST, MNIST, ...), a folder per class "
        "(train/ and test/, or one tree), or a .npz with x_train, y_train, x_test, y_test "
        "(default: $FMNIST_DATA_DIR, else ~/.keras/datasets/fashion-mnist)",
    )
    parser.add_argument(
        "--download",
        action="store_true",
        help="download Fashion-MNIST through Keras if its files are missing",
    )
    parser.add_argument(
        "--image-size",
        type=_image_size,
        metavar="HxW",
        help="resize folder images to H x W (default: the size most of them have)",
    )


def _image_size(text: str) -> tuple[int, int]:
    height, _, width = text.lower().partition("x")
    if not (height.isdigit() and width.isdigit() and int(height) > 0 and int(width) > 0):
        raise argparse.ArgumentTypeError(f"expected HxW such as 64x64, got {text!r}")
    return int(height), int(width)


def _open(args: argparse.Namespace, val_fraction: float, seed: int):
    """The dataset the flags name, with the run's split, and a line saying what it holds."""
    from fmnist.data import open_dataset
    from fmnist.train.data import data_dir_for

    data = open_dataset(
        data_dir_for(args.data_dir, download=args.download),
        val_fraction=val_fraction,
        seed=seed,
        image_size=args.image_size,
    )
    print(f"data: {data.describe()}", flush=True)
    return data


def _data(args: argparse.Namespace) -> int:
    from fmnist.contract import FASHION_MNIST
    from fmnist.dataset import OFFICIAL_FILES

    data = _open(args, val_fraction=0.1, seed=42)
    if data.kind == "idx" and data.contract == FASHION_MNIST:  # opening verified the files
        for official in OFFICIAL_FILES:
            print(f"ok  {official.name}  sha256 {official.sha256[:16]}...")
        print(f"Fashion-MNIST verified in {data.path}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from fmnist.run_dir import RunDir
    from fmnist.train.config import load_config

    config = load_config(args.config, quick=args.quick, epochs=args.epochs, seed=args.seed)
    if RunDir(args.out).model_path.exists() and not args.overwrite:
        raise UserError(f"{args.out} already holds a trained model (use --overwrite to replace it)")

    from fmnist.train.distribute import is_chief, make_strategy, split_cpu
    from fmnist.train.evaluate import evaluate_run
    from fmnist.train.train import train

    if args.cpu_devices:
        split_cpu(args.cpu_devices)
    strategy = make_strategy(args.strategy) if args.strategy else None
    data = _open(args, config.val_fraction, config.seed)
    result = train(
        config, data, args.out, verbose="auto" if sys.stdout.isatty() else 2, strategy=strategy
    )
    print(
        f"trained {result.epochs_run} epochs in {result.wall_time_s:.0f} s "
        f"({result.images_per_s:.0f} img/s); best epoch {result.best_epoch}",
        flush=True,
    )
    if not is_chief(strategy):
        print("not the chief worker: worker 0 evaluates and keeps the run")
        return 0
    metrics = evaluate_run(args.out, data.path)
    print(f"test accuracy {metrics['accuracy']:.4f}, macro F1 {metrics['macro_f1']:.4f}")
    print(f"run directory: {args.out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from fmnist.run_dir import RunDir
    from fmnist.train.evaluate import evaluate_run

    RunDir(args.run).check()
    metrics = evaluate_run(args.run, args.data_dir)
    print(metrics["classification_report"])
    print(f"test accuracy {metrics['accuracy']:.4f}, macro F1 {metrics['macro_f1']:.4f}")
    return 0


def _tune(args: argparse.Namespace) -> int:
    from fmnist.train.config import load_config
    from fmnist.train.tune import TuneConfig, tune

    base = load_config(args.config)
    tune_config = TuneConfig.quick() if args.quick else TuneConfig()
    for flag, value in (("--trials", args.trials), ("--epochs", args.epochs)):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be >= 1, got {value}")
    if args.trials is not None:
        tune_config = tune_config.replace(trials=args.trials)
    if args.epochs is not None:
        tune_config = tune_config.replace(epochs=args.epochs)
    data = _open(args, base.val_fraction, base.seed)
    result = tune(base, tune_config, data, args.out)
    print(result.table)
    print(
        f"best: {json.dumps(result.best_params)} -> validation accuracy "
        f"{result.best_value:.4f}; config written to {result.best_config_path}"
    )
    return 0
