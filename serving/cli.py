"""Subcommands of this stage (registered on the `fmnist` command)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands to the `fmnist` parser."""
