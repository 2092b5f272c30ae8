"""Limits every command checks before doing work: output paths, thread counts, NaN references."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from fmnist.cli import check_output_file
from fmnist.edge.classifier import check_num_threads, max_threads
from fmnist.errors import UserError
from fmnist.parity import compare


@pytest.mark.parametrize(
    ("relative", "message"),
    [
        pytest.param("missing/out.json", "does not exist (it is not created for you)", id="no-dir"),
        pytest.param("a/b/c/out.json", "does not exist", id="no-dirs"),
        pytest.param(".", "Is a directory", id="a-directory"),
        pytest.param("file.txt/out.json", "does not exist", id="parent-is-a-file"),
    ],
)
def test_output_file_must_have_an_existing_directory(
    tmp_path: Path, relative: str, message: str
) -> None:
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(UserError, match=re.escape(message)):
        check_output_file(tmp_path / relative, "--json")
    assert not (tmp_path / "missing").exists() and not (tmp_path / "a").exists()


@pytest.mark.parametrize("relative", ["out.json", "file.txt"])
def test_output_file_in_an_existing_directory_is_accepted(tmp_path: Path, relative: str) -> None:
    (tmp_path / "file.txt").write_text("x")
    assert check_output_file(tmp_path / relative, "--json") == tmp_path / relative


def test_max_threads_is_four_per_cpu() -> None:
    assert max_threads() == (os.cpu_count() or 1) * 4


@pytest.mark.parametrize("threads", [None, 1, "max"])
def test_thread_counts_in_range_are_accepted(threads) -> None:
    check_num_threads(max_threads() if threads == "max" else threads)


@pytest.mark.parametrize("threads", [0, -1, "max+1", 100_000, 2**63])
def test_thread_counts_out_of_range_are_refused(threads) -> None:
    value = max_threads() + 1 if threads == "max+1" else threads
    with pytest.raises(UserError, match=f"--threads must be between 1 and {max_threads()}"):
        check_num_threads(value, "--threads")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_compare_refuses_a_reference_it_cannot_measure_by(bad: float) -> None:
    """A NaN in the reference is 'could not check' (exit 2), not drift (exit 1)."""
    reference = np.full((4, 2), 0.5)
    reference[1, 0] = bad
    with pytest.raises(UserError, match="NaN or infinite") as raised:
        compare(reference, np.full((4, 2), 0.5), np.zeros(4), ["a", "b"])
    assert raised.value.exit_code == 2
