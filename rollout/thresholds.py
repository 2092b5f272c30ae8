"""Thresholds in TFX's Evaluator terms (TFMA's MetricThreshold), and the verdict on a metric.

A value threshold bounds a metric: `lower_bound` <= value <= `upper_bound`. A change
threshold bounds how far the candidate may move from the baseline: `absolute` on
candidate - baseline, `relative` on (candidate - baseline) / baseline, with a direction:
`higher_is_better` needs the change >= the limit (a negative limit allows a drop that
large), `lower_is_better` needs it <= the limit. As in TFMA, a metric with no baseline is
judged on its value threshold alone. Bounds are inclusive here (TFMA's are strict; only a
metric exactly on a bound differs), as every limit of this project is.

A thresholds file (JSON, or TOML by its `.toml` suffix) maps metric names to
`{"value": {...}, "change": {...}}`, e.g. in TOML:

    [accuracy]
    value = { lower_bound = 0.90 }
    change = { direction = "higher_is_better", absolute = -0.005 }
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from fmnist.errors import UserError

HIGHER_IS_BETTER = "higher_is_better"
LOWER_IS_BETTER = "lower_is_better"
DIRECTIONS = (HIGHER_IS_BETTER, LOWER_IS_BETTER)
MAX_FILE_BYTES = 1 << 20

# Metrics a comparison measures, with the direction a change threshold takes by default and
# whether it has a baseline value (a change threshold needs one).
METRICS: dict[str, tuple[str, bool, str]] = {
    "accuracy": (HIGHER_IS_BETTER, True, "test-set accuracy of the float model"),
    "macro_precision": (HIGHER_IS_BETTER, True, "test-set macro precision"),
    "macro_recall": (HIGHER_IS_BETTER, True, "test-set macro recall"),
    "macro_f1": (HIGHER_IS_BETTER, True, "test-set macro F1"),
    "class_recall": (HIGHER_IS_BETTER, True, "test-set recall of each class"),
    "agreement": (HIGHER_IS_BETTER, False, "test-set top-1 agreement of the two versions"),
    "traffic_agreement": (HIGHER_IS_BETTER, False, "replayed answers agreeing with the log"),
    "traffic_errors": (LOWER_IS_BETTER, False, "replayed requests that failed"),
    "traffic_max_score_diff": (LOWER_IS_BETTER, False, "largest class score change"),
    "traffic_latency_p50_ms": (LOWER_IS_BETTER, True, "median latency, one request at a time"),
    "traffic_latency_p99_ms": (LOWER_IS_BETTER, True, "p99 latency, one request at a time"),
}


@dataclass(frozen=True)
class ValueThreshold:
    lower_bound: float | None = None
    upper_bound: float | None = None


@dataclass(frozen=True)
class ChangeThreshold:
    direction: str
    absolute: float | None = None
    relative: float | None = None


@dataclass(frozen=True)
class MetricThreshold:
    value: ValueThreshold | None = None
    change: ChangeThreshold | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for part in ("value", "change"):
            if getattr(self, part) is not None:
                out[part] = {k: v for k, v in asdict(getattr(self, part)).items() if v is not None}
        return out

    def describe(self) -> str:
        """`>= 0.9; change >= -0.005` (empty: none)."""
        parts = []
        if self.value and self.value.lower_bound is not None:
            parts.append(f">= {self.value.lower_bound:g}")
        if self.value and self.value.upper_bound is not None:
            parts.append(f"<= {self.value.upper_bound:g}")
        if self.change:
            sign = ">=" if self.change.direction == HIGHER_IS_BETTER else "<="
            if self.change.absolute is not None:
                parts.append(f"change {sign} {self.change.absolute:+g}")
            if self.change.relative is not None:
                parts.append(f"change {sign} {self.change.relative:+.0%}")
        return "; ".join(parts)


# Export's gate allows int8 0.5 pp of accuracy; a new version the same. Per class: T-shirt/top
# recall spans 2.5 pp over four seeds of the default model (docs/accuracy.md), so 3 pp.
DEFAULT_THRESHOLDS: dict[str, MetricThreshold] = {
    "accuracy": MetricThreshold(change=ChangeThreshold(HIGHER_IS_BETTER, absolute=-0.005)),
    "class_recall": MetricThreshold(change=ChangeThreshold(HIGHER_IS_BETTER, absolute=-0.03)),
    "traffic_agreement": MetricThreshold(value=ValueThreshold(lower_bound=0.9)),
    "traffic_errors": MetricThreshold(value=ValueThreshold(upper_bound=0)),
}


def parse_thresholds(data: Any, source: str) -> dict[str, MetricThreshold]:
    """Thresholds from a mapping of metric name -> {value, change}; a UserError names the
    field and `source` for anything else."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: thresholds must be a table of metric names")
    thresholds = {}
    for metric, spec in data.items():
        where = f"{source}: {metric}"
        if metric not in METRICS:
            raise UserError(f"{where}: unknown metric (known: {', '.join(METRICS)})")
        if not isinstance(spec, dict) or not spec or set(spec) - {"value", "change"}:
            raise UserError(f"{where}: expected a table with 'value' and/or 'change'")
        value = change = None
        if "value" in spec:
            bounds = _numbers(spec["value"], ("lower_bound", "upper_bound"), f"{where}.value")
            value = ValueThreshold(**bounds)
            if None not in bounds.values() and bounds["lower_bound"] > bounds["upper_bound"]:
                raise UserError(f"{where}.value: lower_bound is above upper_bound")
        if "change" in spec:
            if not METRICS[metric][1]:
                raise UserError(
                    f"{where}: compares the candidate with the baseline or the log already; "
                    "only a value threshold applies"
                )
            fields = spec["change"]
            if not isinstance(fields, dict):
                raise UserError(f"{where}.change: expected a table")
            direction = str(fields.get("direction", "")).lower()
            if direction not in DIRECTIONS:
                raise UserError(
                    f"{where}.change: direction must be higher_is_better or lower_is_better"
                )
            limits = _numbers(
                {k: v for k, v in fields.items() if k != "direction"},
                ("absolute", "relative"),
                f"{where}.change",
            )
            change = ChangeThreshold(direction, **limits)
        thresholds[metric] = MetricThreshold(value, change)
    return thresholds


def _numbers(fields: Any, names: tuple[str, str], where: str) -> dict[str, float | None]:
    if not isinstance(fields, dict) or not fields or set(fields) - set(names):
        raise UserError(f"{where}: expected {' and/or '.join(names)}")
    out: dict[str, float | None] = dict.fromkeys(names)
    for name, value in fields.items():
        number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        if number is None or not math.isfinite(number):
            raise UserError(f"{where}.{name} must be a finite number, got {value!r}")
        out[name] = float(number)
    return out


def load_thresholds(path: Path) -> dict[str, MetricThreshold]:
    """A thresholds file: TOML if it ends in .toml, else JSON."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise UserError(f"{path}: over {MAX_FILE_BYTES} bytes; not a thresholds file")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: unreadable thresholds file: {err}") from None
    try:
        if path.suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib
            data = tomllib.loads(text)
        else:
            from fmnist.manifest import parse_json

            data = parse_json(text.encode())
    except ValueError as err:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise UserError(
            f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: "
            f"{' '.join(str(err).split())}"
        ) from None
    return parse_thresholds(data, str(path))


@dataclass
class Check:
    """One metric judged: its values, the threshold, and the verdict."""

    metric: str
    candidate: float | None
    baseline: float | None
    threshold: MetricThreshold
    failures: list[str]
    note: str = ""

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def change(self) -> float | None:
        if self.candidate is None or self.baseline is None:
            return None
        return self.candidate - self.baseline

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "candidate": self.candidate,
            "baseline": self.baseline,
            "change": self.change,
            "threshold": self.threshold.to_dict(),
            "passed": self.passed,
            "failures": self.failures,
            "note": self.note,
        }


def judge(
    metric: str,
    candidate: float | None,
    baseline: float | None,
    threshold: MetricThreshold,
    *,
    has_baseline: bool,
) -> Check:
    """Judge `candidate` (and its change from `baseline`) by `threshold`. A missing value
    fails a threshold that needs it (a gate is never passed by an absent measurement),
    except change thresholds when there is no baseline version at all."""
    check = Check(metric, candidate, baseline, threshold, [])
    value = threshold.value
    if value is not None:
        if candidate is None:
            check.failures.append(f"{metric}: not measured, so its value threshold cannot pass")
        else:
            if value.lower_bound is not None and candidate < value.lower_bound - 1e-12:
                check.failures.append(f"{metric} {candidate:.4g} is below {value.lower_bound:g}")
            if value.upper_bound is not None and candidate > value.upper_bound + 1e-12:
                check.failures.append(f"{metric} {candidate:.4g} is above {value.upper_bound:g}")
    change = threshold.change
    if change is None:
        return check
    if not has_baseline:
        check.note = "no baseline: change threshold not applied"
        return check
    if candidate is None or baseline is None:
        check.failures.append(f"{metric}: not measured for both versions; its change cannot pass")
        return check
    higher = change.direction == HIGHER_IS_BETTER
    diff = candidate - baseline
    if change.absolute is not None and not _within(diff, change.absolute, higher):
        check.failures.append(
            f"{metric} changed {diff:+.4g} ({baseline:.4g} -> {candidate:.4g}), "
            f"beyond {change.absolute:+g} ({change.direction.replace('_', ' ')})"
        )
    if change.relative is not None:
        if baseline == 0:
            check.failures.append(f"{metric}: relative change undefined (baseline 0)")
        elif not _within(diff / baseline, change.relative, higher):
            check.failures.append(
                f"{metric} changed {diff / baseline:+.1%} ({baseline:.4g} -> {candidate:.4g}), "
                f"beyond {change.relative:+.1%} ({change.direction.replace('_', ' ')})"
            )
    return check


def _within(change: float, limit: float, higher_is_better: bool) -> bool:
    return change >= limit - 1e-12 if higher_is_better else change <= limit + 1e-12


def with_limits(
    thresholds: dict[str, MetricThreshold],
    *,
    min_accuracy: float | None = None,
    max_accuracy_drop_pp: float | None = None,
    max_class_recall_drop_pp: float | None = None,
    min_agreement: float | None = None,
    min_traffic_agreement: float | None = None,
    max_traffic_errors: int | None = None,
    max_latency_increase: float | None = None,
) -> dict[str, MetricThreshold]:
    """`thresholds` with the limits `fmnist compare`'s flags set (None: unchanged); a bad
    value is a UserError naming its flag. Drops are in percentage points, as export's."""
    out = dict(thresholds)

    def value(metric: str, **bounds: float) -> None:
        old = out.get(metric, MetricThreshold())
        out[metric] = replace(
            old, value=ValueThreshold(**{**asdict(old.value or ValueThreshold()), **bounds})
        )

    def change(metric: str, direction: str, **limits: float) -> None:
        out[metric] = replace(
            out.get(metric, MetricThreshold()), change=ChangeThreshold(direction, **limits)
        )

    for flag, number in (
        ("--min-accuracy", min_accuracy),
        ("--min-agreement", min_agreement),
        ("--min-traffic-agreement", min_traffic_agreement),
    ):
        if number is not None and not (math.isfinite(number) and 0 <= number <= 1):
            raise UserError(f"{flag} must be a fraction between 0 and 1, got {number}")
    for flag, number in (
        ("--max-accuracy-drop", max_accuracy_drop_pp),
        ("--max-class-recall-drop", max_class_recall_drop_pp),
    ):
        if number is not None and not (math.isfinite(number) and 0 <= number <= 100):
            raise UserError(f"{flag} must be percentage points between 0 and 100, got {number}")
    if max_traffic_errors is not None and max_traffic_errors < 0:
        raise UserError(f"--max-traffic-errors must be >= 0, got {max_traffic_errors}")
    if max_latency_increase is not None and not (
        math.isfinite(max_latency_increase) and max_latency_increase >= 0
    ):
        raise UserError("--max-latency-increase must be a relative change >= 0, e.g. 0.5")
    if min_accuracy is not None:
        value("accuracy", lower_bound=min_accuracy)
    if max_accuracy_drop_pp is not None:
        change("accuracy", HIGHER_IS_BETTER, absolute=-max_accuracy_drop_pp / 100)
    if max_class_recall_drop_pp is not None:
        change("class_recall", HIGHER_IS_BETTER, absolute=-max_class_recall_drop_pp / 100)
    if min_agreement is not None:
        value("agreement", lower_bound=min_agreement)
    if min_traffic_agreement is not None:
        value("traffic_agreement", lower_bound=min_traffic_agreement)
    if max_traffic_errors is not None:
        value("traffic_errors", upper_bound=max_traffic_errors)
    if max_latency_increase is not None:
        change("traffic_latency_p99_ms", LOWER_IS_BETTER, relative=max_latency_increase)
    return out
