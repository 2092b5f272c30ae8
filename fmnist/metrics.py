"""Classification metrics as every stage reports them: evaluation, export's manifest, the
pipeline's report. scikit-learn is imported when they are computed, not with this module."""

from __future__ import annotations

from typing import Any

import numpy as np


def compute_metrics(
    labels: np.ndarray, predicted: np.ndarray, class_names: list[str] | tuple[str, ...]
) -> dict[str, Any]:
    """Accuracy, macro precision/recall/F1 and per-class figures, all from scikit-learn."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    class_ids = list(range(len(class_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=class_ids, zero_division=0
    )
    macro = precision_recall_fscore_support(
        labels, predicted, labels=class_ids, average="macro", zero_division=0
    )
    return {
        "num_examples": len(labels),
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_precision": float(macro[0]),
        "macro_recall": float(macro[1]),
        "macro_f1": float(macro[2]),
        "per_class": [
            {
                "class_id": i,
                "class_name": class_names[i],
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i in class_ids
        ],
    }


def text_report(
    labels: np.ndarray, predicted: np.ndarray, class_names: list[str] | tuple[str, ...]
) -> str:
    """scikit-learn's classification report, four digits."""
    from sklearn.metrics import classification_report

    return classification_report(
        labels, predicted, target_names=list(class_names), digits=4, zero_division=0
    )
