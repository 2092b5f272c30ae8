"""The child-process probe: a model that aborts the TFLite runtime is reported, not fatal."""

from __future__ import annotations

from pathlib import Path

import pytest

from fmnist.edge.model_probe import ModelCrashed, check_in_child
from fmnist.edge.runtime import select_runtime

HALF_PLUS_TWO = "saved_model_half_plus_two_tflite/00000123/model.tflite"


def test_a_model_that_aborts_the_runtime_is_a_crash_report(aborting_tflite: Path) -> None:
    with pytest.raises(ModelCrashed, match=r"killed the process that loaded it \(SIGABRT\)"):
        check_in_child((aborting_tflite / "model.tflite").read_bytes(), select_runtime().name)


def test_a_model_that_loads_and_runs_passes(serving_fixtures: Path) -> None:
    check_in_child((serving_fixtures / HALF_PLUS_TWO).read_bytes(), select_runtime().name)


def test_an_error_the_runtime_raises_is_left_to_the_caller() -> None:
    # Not a crash: loading in process raises the same error, with the caller's handling.
    check_in_child(b"\0\0\0\0TFL3" + b"\0" * 64, select_runtime().name)
