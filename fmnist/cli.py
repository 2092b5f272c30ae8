"""The `fmnist` command: one subcommand per pipeline step, each registered by its stage.

Stage CLIs only parse arguments and report; the work lives in the stage libraries,
which are imported lazily so that `fmnist --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from fmnist import __version__
from fmnist.errors import EXIT_USAGE, UserError

# Stage modules that contribute subcommands, in the order a user meets them.
STAGE_CLIS = (
    "fmnist.train.cli",
    "fmnist.export.cli",
    "fmnist.serving.server.cli",
    "fmnist.serving.client.cli",
    "fmnist.rollout.cli",
    "fmnist.pipeline.cli",
)


# Commands that never touch TensorFlow (the others import it once, quietly, up front).
TF_FREE_COMMANDS = {"data", "replay", "compare", "promote"}
# The smallest extra that brings a module, for the error a missing one gives.
EXTRA_OF_MODULE = {
    **dict.fromkeys(("grpc", "google", "requests", "orjson"), "client"),
    **dict.fromkeys(("ai_edge_litert", "tflite_runtime", "tornado", "prometheus_client"), "edge"),
    **dict.fromkeys(("flatbuffers", "google_crc32c"), "edge"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fmnist",
        description="Train, export, serve and check a Fashion-MNIST CNN.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in STAGE_CLIS:
        importlib.import_module(module_name).register(subparsers)
    return parser


def run(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace, prog: str) -> int:
    """Run a command handler, turning user errors into one line on stderr and an exit code."""
    try:
        return int(handler(args) or 0)
    except UserError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return err.exit_code
    except OSError as err:  # a path the user gave: unwritable, a directory, a full disk
        print(f"{prog}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except ModuleNotFoundError as err:  # e.g. `fmnist train` on a `[client]` install
        extra = EXTRA_OF_MODULE.get((err.name or "").split(".")[0], "tf")
        print(
            f"{prog}: error: needs {err.name!r}, which is not installed; install it with: "
            f"pip install 'fmnist-deploy[{extra}]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def check_output_file(path: Path, flag: str) -> Path:
    """Refuse an output file path that cannot be written, before any work is done.

    Its directory must already exist: a typo in a path must not silently create a tree.
    """
    if path.is_dir():
        raise UserError(f"{flag} {path}: Is a directory (give a file path)")
    parent = path.parent
    if not parent.is_dir():
        raise UserError(
            f"{flag} {path}: directory {parent} does not exist (it is not created for you)"
        )
    return path


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with its native start-up lines (oneDNN, CUDA probing on a CPU-only
    machine) silenced: noise for users, and it buries our one-line errors. Set
    TF_CPP_MIN_LOG_LEVEL=0 to see them."""
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") in ("0", "1") or "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if importlib.util.find_spec("tensorflow") is None:
        return  # an edge-only install: the commands that need TensorFlow say so
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        importlib.import_module("tensorflow")
    except ImportError as err:
        raise UserError(f"TensorFlow is installed but fails to import: {err}") from None
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"fmnist {args.command}"
    precheck = getattr(args, "precheck", None)
    if precheck is not None:  # a stage's quick checks, which must not wait for TensorFlow
        code = run(precheck, args, prog)
        if code:
            return code
    if args.command not in TF_FREE_COMMANDS:
        code = run(lambda _: import_tensorflow_quietly(), args, prog)
        if code:
            return code
    return run(args.handler, args, prog)


if __name__ == "__main__":
    sys.exit(main())
