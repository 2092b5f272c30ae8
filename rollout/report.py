"""Replay and comparison results as a person reads them (a text table) and as a pull request
or a CI summary shows them (Markdown); JSON is each result's `to_dict()`."""

from __future__ import annotations

from typing import Any

from fmnist.rollout.compare import Comparison
from fmnist.rollout.replay import ReplayResult
from fmnist.rollout.thresholds import Check


def key_values(rows: list[tuple[str, str]]) -> str:
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in rows)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'s' * (count != 1)}"


def percent(value: float) -> str:
    return f"{value * 100:.2f}%"


# --- replay ---------------------------------------------------------------------------------


def replay_summary(result: ReplayResult) -> list[tuple[str, str]]:
    tol = result.tolerance
    rows = [
        ("endpoint", f"{result.api} {result.endpoint}, model {result.model}, {result.target}"),
        ("logs", f"{_plural(result.files, 'file')}, {result.logged_calls:,} logged calls"),
        (
            "replayed",
            f"{result.replayed:,} calls, {result.answers:,} answers in "
            f"{result.replay_time_s:.2f} s ({result.requests_per_s:,.0f} calls/s)",
        ),
        ("logged by", _versions(result.logged_versions)),
        ("answered by", _versions(result.answered_versions)),
        ("agreement", f"{percent(result.agreement)} (min {percent(tol.min_agreement)})"),
        ("worst class", _worst_class(result)),
        (
            "max |score diff|",
            f"{result.max_score_diff:.4g}"
            + (f" (at {result.max_score_diff_at})" if result.max_score_diff_at else ""),
        ),
        ("mean |score diff|", f"{result.mean_score_diff:.3g}"),
    ]
    if result.values:
        rows.append(("values", f"{result.values:,}, max |diff| {result.max_value_diff:.4g}"))
    rows.append(("errors", _errors(result)))
    rows.append(("skipped", _skipped(result)))
    rows.append(("latency", _latency(result.latency)))
    verdict = "PASS" if result.passed else "FAIL: " + "; ".join(result.failures)
    rows.append(("verdict", verdict))
    return rows


def replay_text(result: ReplayResult) -> str:
    lines = [key_values(replay_summary(result)), ""]
    lines.append(f"{'class':<14} {'logged':>8} {'kept':>8} {'agreement':>10}  became")
    for row in result.per_class:
        lines.append(
            f"{row['name']:<14} {row['logged']:>8,} {row['agreed']:>8,} "
            f"{percent(row['agreement']):>10}  {_became(row)}"
        )
    if result.notes:
        lines += ["", "notes:"] + [f"  {note}" for note in result.notes]
    return "\n".join(lines)


def replay_markdown(result: ReplayResult) -> str:
    parts = [
        f"## Replay: {result.model} {result.target} ({'PASS' if result.passed else 'FAIL'})",
        "",
        markdown_table(["", ""], [[k, v] for k, v in replay_summary(result)]),
        "",
        markdown_table(
            ["logged class", "logged", "kept", "agreement", "became"],
            [
                [
                    row["name"],
                    f"{row['logged']:,}",
                    f"{row['agreed']:,}",
                    percent(row["agreement"]),
                    _became(row),
                ]
                for row in result.per_class
            ],
        ),
    ]
    if result.notes:
        parts += ["", "Notes:", ""] + [f"- {note}" for note in result.notes]
    return "\n".join(parts) + "\n"


def _versions(counts: dict[str, int]) -> str:
    if not counts:
        return "-"
    return ", ".join(
        f"{'not said' if v == 'unknown' else 'version ' + v}: {n:,}" for v, n in counts.items()
    )


def _worst_class(result: ReplayResult) -> str:
    judged = [r for r in result.per_class if r["logged"] >= result.tolerance.min_class_support]
    if not judged:
        return f"n/a (no class has {result.tolerance.min_class_support} logged answers)"
    worst = min(judged, key=lambda row: row["agreement"])
    became = f"; became {_became(worst)}" if worst["became"] else ""
    return (
        f"{worst['name']}: {percent(worst['agreement'])} of {worst['logged']:,} kept "
        f"(min {percent(result.tolerance.min_class_agreement)}){became}"
    )


def _became(row: dict[str, Any]) -> str:
    items = list(row["became"].items())
    text = ", ".join(f"{name} {n:,}" for name, n in items[:3])
    return text + (f", +{len(items) - 3} more" if len(items) > 3 else "")


def _errors(result: ReplayResult) -> str:
    if not result.errors:
        return "none"
    return "; ".join(
        f"{code} {n:,} (first: {result.first_errors.get(code, '')})"
        for code, n in sorted(result.errors.items())
    )


def _skipped(result: ReplayResult) -> str:
    if not result.skipped:
        return "none"
    text = ", ".join(f"{reason} {n:,}" for reason, n in result.skipped.items())
    if result.other_models:
        text += (
            " (other models: "
            + ", ".join(
                f"{name or '(no name)'} {n:,}" for name, n in sorted(result.other_models.items())
            )
            + ")"
        )
    return text


def _latency(latency: dict[str, Any]) -> str:
    if not latency:
        return "not measured"
    target, logged = latency["target"], latency["logged"]
    text = f"{latency['samples']} requests one by one: target " + _p50_p99(target)
    if logged.get("n"):
        text += f"; {latency['reference']} " + _p50_p99(logged)
        if latency.get("p99_ratio"):
            text += f" (target p99 x{latency['p99_ratio']:.2f})"
        text += f"; {logged['answers_as_logged']}/{logged['n']} answered as logged"
    if latency.get("note"):
        text += f"; {latency['note']}"
    return text


def _p50_p99(side: dict[str, Any]) -> str:
    if not side.get("n"):
        return "n/a"
    return f"p50 {side['p50_ms']:.2f} ms, p99 {side['p99_ms']:.2f} ms"


# --- compare --------------------------------------------------------------------------------


def compare_summary(comparison: Comparison) -> list[tuple[str, str]]:
    against = (
        f"version {comparison.baseline} ({comparison.baseline_source})"
        if comparison.baseline is not None
        else comparison.baseline_source
    )
    test_set = comparison.test_set
    rows = [
        ("compare", f"{comparison.model} version {comparison.candidate} against {against}"),
        ("baseline blessing", comparison.baseline_blessing),
        (
            "test set",
            f"{test_set['num_examples']:,} examples, labels SHA-256 "
            f"{(test_set['labels_sha256'] or '?')[:12]}... (the float models' answers)",
        ),
    ]
    if "agreement" in test_set:
        rows.append(
            (
                "agreement",
                f"{percent(test_set['agreement'])} of the test images "
                f"({test_set['changed_answers']:,} answers changed)",
            )
        )
    traffic = comparison.traffic
    if traffic:
        latency = traffic.get("latency") or {}
        rows.append(
            (
                "traffic",
                f"{traffic['replayed']:,} logged calls replayed against version "
                f"{comparison.candidate}: agreement {percent(traffic['agreement'])}, "
                f"errors {sum(traffic['errors'].values())}, latency: {_latency(latency)}",
            )
        )
    verdict = "PASS" if comparison.passed else "FAIL: " + "; ".join(comparison.failures)
    rows.append(("verdict", verdict))
    return rows


def _metric_rows(comparison: Comparison) -> list[list[str]]:
    """Metric, candidate, baseline, change, threshold, verdict: every metric with a
    threshold, test-set figures without one, and the worst class for class_recall."""
    checks = {check.metric: check for check in comparison.checks}
    test_set = comparison.test_set
    rows = []
    for metric, value in test_set["candidate"].items():
        baseline = (test_set["baseline"] or {}).get(metric)
        rows.append(_metric_row(metric, value, baseline, checks.pop(metric, None)))
    classes = [c for name, c in list(checks.items()) if name.startswith("class_recall[")]
    if classes:
        worst = min(classes, key=lambda c: c.change if c.change is not None else c.candidate)
        row = _metric_row(worst.metric, worst.candidate, worst.baseline, worst)
        failed = sum(not c.passed for c in classes)
        row[0] = f"class_recall (worst: {worst.metric[13:-1]})"
        row[-1] = "pass" if not failed else f"FAIL ({failed} classes)"
        rows.append(row)
        for check in classes:
            checks.pop(check.metric)
    for check in checks.values():
        rows.append(_metric_row(check.metric, check.candidate, check.baseline, check))
    return rows


def _metric_row(metric: str, value: Any, baseline: Any, check: Check | None) -> list[str]:
    change = (
        "" if value is None or baseline is None else _number(value - baseline, metric, sign=True)
    )
    verdict = "-" if check is None else ("pass" if check.passed else "FAIL")
    if check is not None and check.note:
        verdict += f" ({check.note})"
    threshold = check.threshold.describe() if check is not None else ""
    return [
        metric,
        _number(value, metric),
        _number(baseline, metric),
        change,
        threshold or "-",
        verdict,
    ]


def _number(value: Any, metric: str, *, sign: bool = False) -> str:
    """Counts whole, milliseconds to 2 decimals, fractions to 4."""
    if value is None:
        return "-"
    plus = "+" if sign else ""
    if isinstance(value, int):
        return f"{value:{plus},}"
    return f"{value:{plus},.2f}" if metric.endswith("_ms") else f"{value:{plus}.4f}"


def _class_rows(comparison: Comparison) -> list[list[str]]:
    checks = {check.metric: check for check in comparison.checks}
    rows = []
    for row in comparison.test_set["per_class"]:
        check = checks.get(f"class_recall[{row['class_name']}]")
        old, new = row["baseline_recall"], row["candidate_recall"]
        rows.append(
            [
                row["class_name"],
                f"{row['support']:,}" if isinstance(row["support"], int) else "-",
                "-" if old is None else percent(old),
                percent(new),
                "-" if old is None else f"{(new - old) * 100:+.2f}",
                "-" if check is None else ("pass" if check.passed else "FAIL"),
            ]
        )
    return rows


METRIC_HEADER = ["metric", "candidate", "baseline", "change", "threshold", "verdict"]
CLASS_HEADER = ["class", "support", "baseline", "candidate", "change pp", "verdict"]


def compare_text(comparison: Comparison) -> str:
    lines = [key_values(compare_summary(comparison)), ""]
    lines += _columns(METRIC_HEADER, _metric_rows(comparison))
    lines += ["", *_columns(CLASS_HEADER, _class_rows(comparison))]
    if comparison.notes:
        lines += ["", "notes:"] + [f"  {note}" for note in comparison.notes]
    return "\n".join(lines)


def compare_markdown(comparison: Comparison) -> str:
    verdict = "PASS" if comparison.passed else "FAIL"
    parts = [
        f"## Compare: {comparison.model} version {comparison.candidate} ({verdict})",
        "",
        markdown_table(["", ""], [[k, v] for k, v in compare_summary(comparison)]),
        "",
        markdown_table(METRIC_HEADER, _metric_rows(comparison)),
        "",
        markdown_table(CLASS_HEADER, _class_rows(comparison)),
    ]
    if comparison.notes:
        parts += ["", "Notes:", ""] + [f"- {note}" for note in comparison.notes]
    return "\n".join(parts) + "\n"


def _columns(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
