"""Classification metrics against scikit-learn's own and a case worked by hand."""

from __future__ import annotations

import re

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from fmnist.metrics import compute_metrics, text_report


def test_metrics_agree_with_scikit_learn_on_a_known_case() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2, 2])
    predicted = np.array([0, 1, 1, 1, 2, 0, 2])
    metrics = compute_metrics(labels, predicted, ["a", "b", "c"])
    assert metrics["accuracy"] == pytest.approx(5 / 7)
    # By hand: precision a=1/2, b=2/3, c=1; recall a=1/2, b=1, c=2/3.
    assert [r["precision"] for r in metrics["per_class"]] == pytest.approx([0.5, 2 / 3, 1.0])
    assert [r["recall"] for r in metrics["per_class"]] == pytest.approx([0.5, 1.0, 2 / 3])
    assert metrics["macro_precision"] == pytest.approx(
        precision_score(labels, predicted, average="macro")
    )
    assert metrics["macro_recall"] == pytest.approx(
        recall_score(labels, predicted, average="macro")
    )
    assert metrics["macro_f1"] == pytest.approx(f1_score(labels, predicted, average="macro"))
    assert [r["support"] for r in metrics["per_class"]] == [2, 2, 3]


def test_text_report_has_a_row_per_class_in_four_digits() -> None:
    report = text_report(np.array([0, 1, 2]), np.array([0, 1, 1]), ["a", "b", "c"])
    # b: predicted twice, right once; its one image found.
    assert re.search(r"\n\s+b\s+0\.5000\s+1\.0000\s+0\.6667\s+1\n", report), report
