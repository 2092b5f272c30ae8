"""The per-class parity gate on outputs alone: a linear model whose weights for one class are
perturbed loses that class while overall accuracy and agreement stay within tolerance."""

from __future__ import annotations

import numpy as np
import pytest

from fmnist.errors import EXIT_PARITY_FAILED, UserError
from fmnist.manifest import load_manifest
from fmnist.parity import Tolerance, compare, format_result

NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat"]
NAMES += ["Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
SHIRT = NAMES.index("Shirt")


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _linear_model_outputs(shirt_bias: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """1,000 noisy feature vectors per class through a linear softmax classifier; the float
    model has zero bias, the candidate the same weights with Shirt's bias lowered."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 1000)
    features = 3.0 * np.eye(10)[labels] + rng.normal(0, 1, (len(labels), 10))
    weights = np.eye(10)
    bias = np.zeros(10)
    perturbed = bias.copy()
    perturbed[SHIRT] = shirt_bias
    return labels, _softmax(features @ weights + bias), _softmax(features @ weights + perturbed)


def test_one_collapsing_class_fails_although_overall_accuracy_is_within_tolerance() -> None:
    labels, reference, candidate = _linear_model_outputs(shirt_bias=-0.1)
    result = compare(reference, candidate, labels, NAMES, Tolerance())
    worst = result.worst_class
    assert worst is not None and worst["class_name"] == "Shirt"
    assert -worst["delta_pp"] > 1.0  # the class lost more than the 1.0 pp default
    assert result.accuracy_drop_pp <= 0.5 and result.agreement >= 0.99  # the rest passes
    assert not result.passed and result.exit_code == EXIT_PARITY_FAILED
    assert len(result.failures) == 1 and "'Shirt' recall dropped" in result.failures[0]


def test_the_same_drop_passes_under_a_looser_class_limit() -> None:
    labels, reference, candidate = _linear_model_outputs(shirt_bias=-0.1)
    drop = -compare(reference, candidate, labels, NAMES).worst_class["delta_pp"]
    result = compare(reference, candidate, labels, NAMES, Tolerance(max_class_recall_drop_pp=drop))
    assert result.passed, result.failures


def test_the_table_prints_the_worst_class_with_both_recalls_and_the_drop() -> None:
    labels, reference, candidate = _linear_model_outputs(shirt_bias=-0.1)
    result = compare(reference, candidate, labels, NAMES)
    worst = result.worst_class
    line = next(x for x in format_result(result).splitlines() if x.startswith("worst class"))
    assert f"Shirt: float {worst['reference_accuracy'] * 100:.2f}%" in line
    assert f"candidate {worst['candidate_accuracy'] * 100:.2f}%" in line
    assert f"drop {-worst['delta_pp']:.2f} pp (max 1.00)" in line


def test_an_unperturbed_candidate_passes() -> None:
    labels, reference, _ = _linear_model_outputs(shirt_bias=0.0)
    assert compare(reference, reference, labels, NAMES).passed


def test_manifest_without_the_class_limit_gets_the_default(make_bundle) -> None:
    manifest = load_manifest(make_bundle())  # its tolerance predates the per-class field
    assert manifest.tolerance.max_class_recall_drop_pp == 1.0


def test_flag_overrides_the_manifest_limit() -> None:
    assert Tolerance().with_overrides(max_class_recall_drop_pp=2.5).max_class_recall_drop_pp == 2.5
    assert Tolerance(max_class_recall_drop_pp=3).with_overrides().max_class_recall_drop_pp == 3


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_a_negative_or_non_finite_class_limit_is_a_user_error(bad: float) -> None:
    with pytest.raises(UserError, match="max_class_recall_drop_pp must be"):
        Tolerance(max_class_recall_drop_pp=bad)
