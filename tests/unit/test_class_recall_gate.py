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


def _small_set(flips: dict[int, int], classes: int = 5, per_class: int = 30):
    """`per_class` images of each class, all right in the reference; the candidate gets
    `flips[c]` of class c's images wrong (answers the next class)."""
    labels = np.repeat(np.arange(classes), per_class)
    reference = np.eye(classes, dtype=np.float32)[labels]
    answers = labels.copy()
    for class_id, count in flips.items():
        answers[np.flatnonzero(labels == class_id)[:count]] = (class_id + 1) % classes
    return labels, reference, np.eye(classes, dtype=np.float32)[answers]


@pytest.mark.parametrize(
    ("flips", "passed"),
    [
        ({}, True),
        ({2: 1}, True),  # one image of 30 is 3.3 pp: a class may always lose one
        ({2: 1, 4: 1}, True),
        ({2: 2}, False),  # two are not one flip
    ],
)
def test_a_small_class_may_lose_one_image(flips: dict[int, int], passed: bool) -> None:
    labels, reference, candidate = _small_set(flips)
    names = [f"shape{i}" for i in range(5)]
    tolerance = Tolerance(max_accuracy_drop_pp=100, min_agreement=0)
    result = compare(reference, candidate, labels, names, tolerance)
    assert result.passed is passed, result.failures
    if not passed:
        assert "'shape2' recall dropped 6.67 pp" in result.failures[0]
        assert "2 of 30 images" in result.failures[0]


@pytest.mark.parametrize(("classes", "lost", "passed"), [(10, 10, True), (10, 11, False)])
def test_large_classes_keep_the_percentage_limit(classes: int, lost: int, passed: bool) -> None:
    labels, reference, candidate = _small_set({3: lost}, classes, per_class=1000)
    names = [str(i) for i in range(classes)]
    tolerance = Tolerance(max_accuracy_drop_pp=100, min_agreement=0)
    assert compare(reference, candidate, labels, names, tolerance).passed is passed


def test_class_names_must_match_the_outputs() -> None:
    labels, reference, candidate = _small_set({}, classes=3)
    with pytest.raises(UserError, match="2 class names"):
        compare(reference, candidate, labels, ["a", "b"])
