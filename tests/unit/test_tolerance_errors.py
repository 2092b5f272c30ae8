"""Tolerance limits out of range: the library names the field (and the manifest it came
from), the commands name the flag the user typed; both are one-line exit-2 errors."""

from __future__ import annotations

import argparse
import importlib
import json
import math
import re

import pytest

from fmnist.errors import EXIT_USAGE, ManifestError, UserError
from fmnist.manifest import MANIFEST_NAME, Manifest, load_manifest
from fmnist.parity import (
    TOLERANCE_FLAGS,
    Tolerance,
    ToleranceError,
    add_tolerance_args,
    check_tolerance_args,
)

BAD_VALUES = [
    pytest.param("max_accuracy_drop_pp", -0.1, "a non-negative number", id="negative-drop"),
    pytest.param("max_accuracy_drop_pp", math.inf, "a non-negative number", id="inf-drop"),
    pytest.param("max_class_recall_drop_pp", math.nan, "a non-negative number", id="nan-recall"),
    pytest.param("max_class_recall_drop_pp", -1.0, "a non-negative number", id="neg-recall"),
    pytest.param("min_agreement", 1.5, "a fraction between 0 and 1", id="agreement>1"),
    pytest.param("min_agreement", math.nan, "a fraction between 0 and 1", id="nan-agreement"),
]


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_tolerance_args(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize(("field", "value", "requirement"), BAD_VALUES)
def test_library_error_names_the_field(field: str, value: float, requirement: str) -> None:
    with pytest.raises(ToleranceError) as caught:
        Tolerance(**{field: value})
    message = str(caught.value)
    assert message.startswith(f"{field} must be {requirement}")
    assert message.endswith(f"got {value}") and "--" not in message
    assert caught.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize(("field", "value", "requirement"), BAD_VALUES)
def test_command_line_error_names_the_flag(field: str, value: float, requirement: str) -> None:
    args = _parse(TOLERANCE_FLAGS[field], str(value))
    with pytest.raises(UserError) as caught:
        Tolerance().with_args(args)
    message = str(caught.value)
    assert message.startswith(f"{TOLERANCE_FLAGS[field]} must be {requirement}")
    assert message.endswith(f"got {value}") and field not in message
    assert caught.value.exit_code == EXIT_USAGE


def test_check_tolerance_args_refuses_the_bad_flag_before_any_work() -> None:
    with pytest.raises(UserError, match=re.escape("--min-agreement must be a fraction")):
        check_tolerance_args(_parse("--max-accuracy-drop", "1", "--min-agreement", "2"))


def test_valid_flags_override_only_what_was_given() -> None:
    base = Tolerance(max_accuracy_drop_pp=2.0, min_agreement=0.9, max_class_recall_drop_pp=3.0)
    got = base.with_args(_parse("--min-agreement", "0.95"))
    assert got == Tolerance(
        max_accuracy_drop_pp=2.0, min_agreement=0.95, max_class_recall_drop_pp=3.0
    )
    check_tolerance_args(_parse())  # no flags: nothing to refuse


def test_stored_tolerance_error_names_its_source() -> None:
    with pytest.raises(ToleranceError) as caught:
        Tolerance.from_dict({"max_accuracy_drop_pp": -2, "min_agreement": 0.9}, source="x.json")
    assert str(caught.value).startswith("x.json: max_accuracy_drop_pp must be a non-negative")


def test_a_manifest_tolerance_out_of_range_is_a_manifest_error_naming_the_file(
    make_bundle,
) -> None:
    # The schema refuses this on load; a Manifest built around unchecked data must still
    # word the problem as the manifest's field, not as a flag nobody typed.
    manifest = load_manifest(make_bundle())
    data = json.loads(json.dumps(manifest.data))
    data["tolerance"]["min_agreement"] = 7
    with pytest.raises(ManifestError) as caught:
        _ = Manifest(bundle_dir=manifest.bundle_dir, data=data).tolerance
    message = str(caught.value)
    assert str(manifest.bundle_dir / MANIFEST_NAME) in message
    assert "min_agreement must be a fraction between 0 and 1, got 7" in message
    assert "--min-agreement" not in message


def test_help_shows_the_defaults_a_command_gates_with() -> None:
    parser = argparse.ArgumentParser()
    add_tolerance_args(parser, defaults=Tolerance())
    text = " ".join(parser.format_help().split())
    assert "(default: 0.5)" in text and "(default: 0.99)" in text and "(default: 1.0)" in text


def test_tolerance_round_trips_through_its_dict() -> None:
    tolerance = Tolerance(max_accuracy_drop_pp=0.25, min_agreement=0.98, max_class_recall_drop_pp=2)
    assert list(tolerance.to_dict()) == list(TOLERANCE_FLAGS)
    assert Tolerance.from_dict(tolerance.to_dict()) == tolerance


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        pytest.param("fmnist.cli", ["export", "run", "--base-path", "b"], id="fmnist-export"),
        pytest.param("fmnist.cli", ["pipeline", "--out", "o"], id="fmnist-pipeline"),
        pytest.param("fmnist.edge.cli", ["parity", "bundle"], id="fmnist-edge-parity"),
    ],
)
def test_commands_refuse_a_bad_flag_in_one_line_with_exit_2(
    command: str, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Checked before TensorFlow loads and before any path is read (none of them exists).
    main = importlib.import_module(command).main
    code = main([*argv, "--max-class-recall-drop", "-2"])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "--max-class-recall-drop must be a non-negative number of percentage points" in err
