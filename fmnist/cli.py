"""The `fmnist` command: one subcommand per pipeline step, each registered by its stage.

Stage CLIs only parse arguments and report; the work lives in the stage libraries,
which are imported lazily so that `fmnist --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from fmnist import __version__
from fmnist.errors import UserError

# Stage modules that contribute subcommands, in the order a user meets them.
STAGE_CLIS = (
    "fmnist.train.cli",
    "fmnist.export.cli",
    "fmnist.serving.cli",
    "fmnist.serving.client_cli",
    "fmnist.pipeline.cli",
)


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
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run(args.handler, args, f"fmnist {args.command}")


if __name__ == "__main__":
    sys.exit(main())
