"""Parity maths: does a deployed model still answer like the float model?

One definition shared by export's TFLite check, the served-model check and the edge
check, so "within tolerance" means the same thing everywhere. TF-free (numpy only).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmnist.errors import EXIT_OK, EXIT_PARITY_FAILED, UserError

# Each limit's command-line flag, shared by every command that checks parity.
TOLERANCE_FLAGS = {
    "max_accuracy_drop_pp": "--max-accuracy-drop",
    "min_agreement": "--min-agreement",
    "max_class_recall_drop_pp": "--max-class-recall-drop",
}


class ToleranceError(UserError):
    """A tolerance limit out of range. The message names the field (and where the value came
    from, if known); `as_flag()` words it as the command-line flag that gave the value."""

    def __init__(self, field: str, requirement: str, value: float, source: str = "") -> None:
        self.field, self.requirement, self.value = field, requirement, value
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field} must be {requirement}, got {value}")

    def as_flag(self) -> UserError:
        return UserError(
            f"{TOLERANCE_FLAGS[self.field]} must be {self.requirement}, got {self.value}"
        )


@dataclass(frozen=True)
class Tolerance:
    """A candidate passes if it loses at most `max_accuracy_drop_pp` percentage points of
    test accuracy, agrees with the float model's top-1 class on at least `min_agreement`
    of the test images, and no class's recall drops more than `max_class_recall_drop_pp`
    (overall accuracy can hide one class collapsing)."""

    max_accuracy_drop_pp: float = 0.5
    min_agreement: float = 0.99
    max_class_recall_drop_pp: float = 1.0

    def __post_init__(self) -> None:
        for name in ("max_accuracy_drop_pp", "max_class_recall_drop_pp"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ToleranceError(name, "a non-negative number of percentage points", value)
        if not (0.0 <= self.min_agreement <= 1.0):  # also False for NaN
            raise ToleranceError("min_agreement", "a fraction between 0 and 1", self.min_agreement)

    @classmethod
    def from_dict(cls, fields: dict[str, float], source: str = "") -> Tolerance:
        """A tolerance from stored fields (e.g. a manifest's); an error names `source` too."""
        try:
            return cls(**fields)
        except ToleranceError as err:
            raise ToleranceError(err.field, err.requirement, err.value, source) from None

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def with_overrides(
        self,
        max_accuracy_drop_pp: float | None = None,
        min_agreement: float | None = None,
        max_class_recall_drop_pp: float | None = None,
    ) -> Tolerance:
        """This tolerance with some limits replaced (None keeps ours)."""
        return Tolerance(
            self.max_accuracy_drop_pp if max_accuracy_drop_pp is None else max_accuracy_drop_pp,
            self.min_agreement if min_agreement is None else min_agreement,
            self.max_class_recall_drop_pp
            if max_class_recall_drop_pp is None
            else max_class_recall_drop_pp,
        )

    def with_args(self, args: argparse.Namespace) -> Tolerance:
        """This tolerance with the flags `add_tolerance_args` defined (unset flags keep ours);
        a bad value is reported as the flag that gave it."""
        given = {
            name: getattr(args, flag[2:].replace("-", "_"), None)
            for name, flag in TOLERANCE_FLAGS.items()
        }
        try:
            return self.with_overrides(**given)
        except ToleranceError as err:
            if given.get(err.field) is None:
                raise
            raise err.as_flag() from None


def check_tolerance_args(args: argparse.Namespace) -> None:
    """Refuse out-of-range tolerance flags, worded as the flags, before any work is done."""
    Tolerance().with_args(args)


@dataclass
class ParityResult:
    """Everything a parity check measured, ready for a table, JSON or a report."""

    name: str
    num_examples: int
    reference_accuracy: float
    candidate_accuracy: float
    accuracy_drop_pp: float
    agreement: float
    max_abs_prob_diff: float
    mean_abs_prob_diff: float
    per_class: list[dict[str, Any]]
    tolerance: Tolerance
    passed: bool
    failures: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def worst_class(self) -> dict[str, Any] | None:
        """The class whose recall dropped most (None if no class had test images)."""
        rows = [row for row in self.per_class if row["support"]]
        return min(rows, key=lambda row: row["delta_pp"]) if rows else None

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.passed else EXIT_PARITY_FAILED

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write_json(self, path: str | Path) -> None:
        """Write the result to `path`, whose directory must exist (none is created)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def add_tolerance_args(parser: argparse.ArgumentParser, defaults: Tolerance | None = None) -> None:
    """`--max-accuracy-drop`, `--min-agreement` and `--max-class-recall-drop`, as every parity
    command has. Unset flags are None: `Tolerance.with_args` keeps the base tolerance's limit,
    which is `defaults` (shown in the help) or, without it, the one export recorded."""
    recorded = "the tolerance export used"
    parser.add_argument(
        "--max-accuracy-drop",
        type=float,
        metavar="PP",
        help=f"allowed test accuracy drop, percentage points (default: "
        f"{defaults.max_accuracy_drop_pp if defaults else recorded})",
    )
    parser.add_argument(
        "--min-agreement",
        type=float,
        metavar="FRACTION",
        help=f"required top-1 agreement, 0-1 (default: "
        f"{defaults.min_agreement if defaults else recorded})",
    )
    parser.add_argument(
        "--max-class-recall-drop",
        type=float,
        metavar="PP",
        help="largest recall drop of any one class, percentage points (default: "
        + (
            f"{defaults.max_class_recall_drop_pp}"
            if defaults
            else f"{recorded}, 1.0 for manifests that predate it"
        )
        + ")",
    )


def compare(
    reference_probs: np.ndarray,
    candidate_probs: np.ndarray,
    labels: np.ndarray,
    class_names: list[str] | tuple[str, ...],
    tolerance: Tolerance = Tolerance(),
    *,
    name: str = "candidate",
    details: dict[str, Any] | None = None,
) -> ParityResult:
    """Compare candidate class probabilities [N, C] with the float reference on labelled data."""
    reference_probs = np.asarray(reference_probs, dtype=np.float64)
    candidate_probs = np.asarray(candidate_probs, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    if (
        reference_probs.shape != candidate_probs.shape
        or reference_probs.shape[0] != len(labels)
        or reference_probs.ndim != 2
        or reference_probs.shape[1] != len(class_names)
    ):
        raise UserError(
            f"parity: shapes differ: reference {reference_probs.shape}, "
            f"candidate {candidate_probs.shape}, labels {labels.shape}, "
            f"{len(class_names)} class names"
        )
    if not np.isfinite(reference_probs).all():
        # Not drift: with NaN in the reference there is nothing to measure the candidate by.
        raise UserError("parity: the reference probabilities hold NaN or infinite values")
    ref_top1 = reference_probs.argmax(axis=1)
    cand_top1 = candidate_probs.argmax(axis=1)
    ref_acc = float(np.mean(ref_top1 == labels))
    cand_acc = float(np.mean(cand_top1 == labels))
    drop_pp = (ref_acc - cand_acc) * 100.0
    agreement = float(np.mean(ref_top1 == cand_top1))
    abs_diff = np.abs(reference_probs - candidate_probs)

    per_class = []
    for class_id, class_name in enumerate(class_names):
        mask = labels == class_id
        support = int(mask.sum())
        ref_c = float(np.mean(ref_top1[mask] == class_id)) if support else float("nan")
        cand_c = float(np.mean(cand_top1[mask] == class_id)) if support else float("nan")
        per_class.append(
            {
                "class_id": class_id,
                "class_name": class_name,
                "support": support,
                "reference_accuracy": ref_c,
                "candidate_accuracy": cand_c,
                "delta_pp": (cand_c - ref_c) * 100.0,
            }
        )

    failures = []
    # A tiny epsilon keeps float rounding from failing a check that sits exactly on the limit.
    if drop_pp > tolerance.max_accuracy_drop_pp + 1e-9:
        failures.append(
            f"accuracy drop {drop_pp:.2f} pp exceeds {tolerance.max_accuracy_drop_pp:.2f} pp"
        )
    if agreement < tolerance.min_agreement - 1e-12:
        failures.append(f"top-1 agreement {agreement:.4f} is below {tolerance.min_agreement:.4f}")
    failures += _class_failures(per_class, tolerance.max_class_recall_drop_pp)
    return ParityResult(
        name=name,
        num_examples=len(labels),
        reference_accuracy=ref_acc,
        candidate_accuracy=cand_acc,
        accuracy_drop_pp=drop_pp,
        agreement=agreement,
        max_abs_prob_diff=float(abs_diff.max()) if abs_diff.size else 0.0,
        mean_abs_prob_diff=float(abs_diff.mean()) if abs_diff.size else 0.0,
        per_class=per_class,
        tolerance=tolerance,
        passed=not failures,
        failures=failures,
        details=dict(details or {}),
    )


def _class_failures(per_class: list[dict[str, Any]], limit_pp: float) -> list[str]:
    """One failure naming the worst class whose recall dropped more than `limit_pp`.

    A class may always lose one image: in a small test set one flip is more than the limit
    (3.3 pp of a 30-image class), and one flip says nothing about a model. With 1,000 images
    a class (Fashion-MNIST) one image is 0.1 pp, so its verdicts are the same."""
    failing = [
        row
        for row in per_class
        if row["support"] and -row["delta_pp"] > limit_pp + 1e-9 and _images_lost(row) > 1
    ]
    if not failing:
        return []
    worst = min(failing, key=lambda row: row["delta_pp"])
    return [
        f"class {worst['class_name']!r} recall dropped {-worst['delta_pp']:.2f} pp "
        f"({worst['reference_accuracy'] * 100:.2f}% -> {worst['candidate_accuracy'] * 100:.2f}%, "
        f"{_images_lost(worst)} of {worst['support']} images), more than {limit_pp:.2f} pp"
    ]


def _images_lost(row: dict[str, Any]) -> int:
    """How many more of the class's images the candidate gets wrong than the reference."""
    return round(-row["delta_pp"] * row["support"] / 100.0)


def format_worst_class(result: ParityResult) -> str:
    """`Shirt: float 80.10%, candidate 78.90%, drop 1.20 pp (max 1.00)`, or `n/a`."""
    worst = result.worst_class
    if worst is None:
        return "n/a"
    drop = -worst["delta_pp"] + 0.0  # + 0.0: no "-0.00" when nothing changed
    return (
        f"{worst['class_name']}: float {worst['reference_accuracy'] * 100:.2f}%, "
        f"candidate {worst['candidate_accuracy'] * 100:.2f}%, drop {drop:.2f} pp "
        f"(max {result.tolerance.max_class_recall_drop_pp:.2f})"
    )


def format_result(result: ParityResult) -> str:
    """A human-readable table: the headline figures, then per-class accuracy deltas."""
    tol = result.tolerance
    rows = [
        ("check", result.name),
        ("examples", f"{result.num_examples}"),
        ("float accuracy", f"{result.reference_accuracy * 100:.2f}%"),
        ("candidate accuracy", f"{result.candidate_accuracy * 100:.2f}%"),
        (
            "accuracy drop",
            f"{result.accuracy_drop_pp:+.2f} pp (max {tol.max_accuracy_drop_pp:.2f})",
        ),
        ("top-1 agreement", f"{result.agreement * 100:.2f}% (min {tol.min_agreement * 100:.2f}%)"),
        ("worst class recall", format_worst_class(result)),
        ("max |prob diff|", f"{result.max_abs_prob_diff:.3g}"),
        ("mean |prob diff|", f"{result.mean_abs_prob_diff:.3g}"),
    ]
    rows += [(key, str(value)) for key, value in result.details.items()]
    rows.append(("verdict", "PASS" if result.passed else "FAIL: " + "; ".join(result.failures)))
    width = max(len(key) for key, _ in rows)
    lines = [f"{key:<{width}}  {value}" for key, value in rows]
    lines.append("")
    # "float"/"candidate" per class are recalls: right answers among that class's images.
    width = max([12, *(len(row["class_name"]) for row in result.per_class)])
    lines.append(
        f"{'class':<{width}} {'support':>7} {'float':>8} {'candidate':>10} {'delta pp':>9}"
    )
    for row in result.per_class:
        lines.append(
            f"{row['class_name']:<{width}} {row['support']:>7} "
            f"{row['reference_accuracy'] * 100:>7.2f}% "
            f"{row['candidate_accuracy'] * 100:>9.2f}% {row['delta_pp']:>+9.2f}"
        )
    return "\n".join(lines)
