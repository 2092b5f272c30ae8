"""Thresholds in TFX's Evaluator terms: value bounds, absolute and relative changes with a
direction, no change threshold without a baseline, and threshold files that say exactly
what is wrong with them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fmnist.errors import UserError
from fmnist.rollout.thresholds import (
    DEFAULT_THRESHOLDS,
    HIGHER_IS_BETTER,
    LOWER_IS_BETTER,
    ChangeThreshold,
    MetricThreshold,
    ValueThreshold,
    judge,
    load_thresholds,
    parse_thresholds,
    with_limits,
)

HIGHER = HIGHER_IS_BETTER
LOWER = LOWER_IS_BETTER

# (threshold, candidate, baseline, passes)
CASES = [
    (MetricThreshold(value=ValueThreshold(lower_bound=0.9)), 0.9, None, True),
    (MetricThreshold(value=ValueThreshold(lower_bound=0.9)), 0.8999, None, False),
    (MetricThreshold(value=ValueThreshold(upper_bound=0)), 0.0, None, True),
    (MetricThreshold(value=ValueThreshold(upper_bound=0)), 1.0, None, False),
    (MetricThreshold(change=ChangeThreshold(HIGHER, absolute=-0.005)), 0.895, 0.9, True),
    (MetricThreshold(change=ChangeThreshold(HIGHER, absolute=-0.005)), 0.894, 0.9, False),
    (MetricThreshold(change=ChangeThreshold(HIGHER, absolute=0.01)), 0.905, 0.9, False),
    (MetricThreshold(change=ChangeThreshold(LOWER, absolute=1.0)), 3.0, 2.0, True),
    (MetricThreshold(change=ChangeThreshold(LOWER, absolute=1.0)), 3.5, 2.0, False),
    (MetricThreshold(change=ChangeThreshold(LOWER, relative=0.5)), 3.0, 2.0, True),
    (MetricThreshold(change=ChangeThreshold(LOWER, relative=0.5)), 3.1, 2.0, False),
    (MetricThreshold(change=ChangeThreshold(HIGHER, relative=-0.1)), 0.9, 1.0, True),
    (MetricThreshold(change=ChangeThreshold(HIGHER, relative=-0.1)), 0.89, 1.0, False),
    (
        MetricThreshold(ValueThreshold(lower_bound=0.5), ChangeThreshold(HIGHER, absolute=0)),
        0.6,
        0.7,
        False,
    ),
]


@pytest.mark.parametrize(("threshold", "candidate", "baseline", "passes"), CASES)
def test_thresholds_judge_as_tfx_defines_them(threshold, candidate, baseline, passes) -> None:
    check = judge("m", candidate, baseline, threshold, has_baseline=True)
    assert check.passed is passes, check.failures


def test_without_a_baseline_only_the_value_threshold_applies() -> None:
    threshold = MetricThreshold(
        ValueThreshold(lower_bound=0.8), ChangeThreshold(HIGHER, absolute=0.0)
    )
    check = judge("accuracy", 0.85, None, threshold, has_baseline=False)
    assert check.passed and check.note == "no baseline: change threshold not applied"
    assert not judge("accuracy", 0.75, None, threshold, has_baseline=False).passed


@pytest.mark.parametrize(
    ("candidate", "baseline", "message"),
    [
        (None, None, "not measured, so its value threshold cannot pass"),
        (1.0, None, "not measured for both versions; its change cannot pass"),
    ],
)
def test_a_missing_measurement_never_passes_a_threshold(candidate, baseline, message) -> None:
    threshold = MetricThreshold(ValueThreshold(lower_bound=0), ChangeThreshold(LOWER, 1.0))
    check = judge("latency", candidate, baseline, threshold, has_baseline=True)
    assert any(message in failure for failure in check.failures)


def test_a_relative_change_from_zero_is_undefined() -> None:
    check = judge(
        "errors",
        1,
        0,
        MetricThreshold(change=ChangeThreshold(LOWER, relative=0.5)),
        has_baseline=True,
    )
    assert check.failures == ["errors: relative change undefined (baseline 0)"]


def test_failures_say_how_far_and_which_way() -> None:
    threshold = MetricThreshold(change=ChangeThreshold(HIGHER, absolute=-0.005))
    (failure,) = judge("accuracy", 0.88, 0.9, threshold, has_baseline=True).failures
    assert failure == "accuracy changed -0.02 (0.9 -> 0.88), beyond -0.005 (higher is better)"


def test_a_threshold_describes_itself() -> None:
    threshold = MetricThreshold(
        ValueThreshold(lower_bound=0.9), ChangeThreshold(LOWER, absolute=1, relative=0.25)
    )
    assert threshold.describe() == ">= 0.9; change <= +1; change <= +25%"
    assert threshold.to_dict() == {
        "value": {"lower_bound": 0.9},
        "change": {"direction": "lower_is_better", "absolute": 1, "relative": 0.25},
    }


def test_a_thresholds_file_in_toml(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.toml"
    path.write_text(
        "[accuracy]\n"
        "value = { lower_bound = 0.85 }\n"
        'change = { direction = "higher_is_better", absolute = -0.01 }\n'
        "[traffic_latency_p99_ms]\n"
        'change = { direction = "LOWER_IS_BETTER", relative = 0.5 }\n'
    )
    assert load_thresholds(path) == {
        "accuracy": MetricThreshold(
            ValueThreshold(lower_bound=0.85), ChangeThreshold(HIGHER, absolute=-0.01)
        ),
        "traffic_latency_p99_ms": MetricThreshold(change=ChangeThreshold(LOWER, relative=0.5)),
    }


def test_a_thresholds_file_in_json(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps({"traffic_errors": {"value": {"upper_bound": 3}}}))
    assert load_thresholds(path) == {
        "traffic_errors": MetricThreshold(value=ValueThreshold(upper_bound=3.0))
    }


BAD_SPECS = [
    ({"accurcy": {"value": {"lower_bound": 1}}}, "accurcy: unknown metric"),
    ({"accuracy": 0.9}, "expected a table with 'value' and/or 'change'"),
    ({"accuracy": {}}, "expected a table with 'value' and/or 'change'"),
    ({"accuracy": {"value": {"lowerbound": 1}}}, "accuracy.value: expected lower_bound"),
    ({"accuracy": {"value": {"lower_bound": "0.9"}}}, "lower_bound must be a finite number"),
    ({"accuracy": {"value": {"lower_bound": True}}}, "lower_bound must be a finite number"),
    ({"accuracy": {"value": {"lower_bound": 1, "upper_bound": 0}}}, "lower_bound is above"),
    ({"accuracy": {"change": {"absolute": -1}}}, "direction must be higher_is_better or"),
    ({"accuracy": {"change": {"direction": "up", "absolute": -1}}}, "direction must be"),
    ({"accuracy": {"change": {"direction": "higher_is_better"}}}, "expected absolute and/or"),
    ({"agreement": {"change": {"direction": "higher_is_better", "absolute": 0}}}, "only a value"),
    ([1, 2], "thresholds must be a table of metric names"),
]


@pytest.mark.parametrize(("spec", "message"), BAD_SPECS)
def test_bad_threshold_specs_are_one_line_errors(spec, message: str) -> None:
    with pytest.raises(UserError) as raised:
        parse_thresholds(spec, "t.json")
    assert message in str(raised.value) and str(raised.value).startswith("t.json")
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("t.json", b'{"accuracy": {"value": {"lower_bound": NaN}}}', "not valid JSON"),
        ("t.json", b'{"accuracy": ' * 50_000, "not valid JSON: nested too deeply"),
        ("t.toml", b"[accuracy\nvalue = 1", "not valid TOML"),
        ("t.json", b"\xff\xfe", "unreadable thresholds file"),
        ("t.json", b" " * (2 << 20), "over 1048576 bytes"),
    ],
    ids=["nan", "nested", "bad toml", "not utf-8", "huge"],
)
def test_bad_threshold_files_are_one_line_errors(tmp_path, name, content, message) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UserError) as raised:
        load_thresholds(path)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_missing_thresholds_file_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unreadable thresholds file"):
        load_thresholds(tmp_path / "none.toml")


def test_flags_add_to_a_metric_s_thresholds_and_keep_the_rest() -> None:
    merged = with_limits(DEFAULT_THRESHOLDS, min_accuracy=0.85, max_latency_increase=0.5)
    assert merged["accuracy"] == MetricThreshold(
        ValueThreshold(lower_bound=0.85), ChangeThreshold(HIGHER, absolute=-0.005)
    )
    assert merged["traffic_latency_p99_ms"] == MetricThreshold(
        change=ChangeThreshold(LOWER, relative=0.5)
    )
    assert with_limits(DEFAULT_THRESHOLDS, max_accuracy_drop_pp=1.0)["accuracy"].change == (
        ChangeThreshold(HIGHER, absolute=-0.01)
    )
    assert DEFAULT_THRESHOLDS["accuracy"].value is None  # the defaults are left alone


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"min_accuracy": 1.5}, "--min-accuracy must be a fraction between 0 and 1"),
        ({"max_accuracy_drop_pp": float("nan")}, "--max-accuracy-drop must be percentage"),
        ({"max_traffic_errors": -1}, "--max-traffic-errors must be >= 0"),
        ({"max_latency_increase": -0.1}, "--max-latency-increase must be a relative change"),
    ],
)
def test_bad_flag_values_name_their_flag(limits: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        with_limits(DEFAULT_THRESHOLDS, **limits)
