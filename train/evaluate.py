"""Final evaluation on the test set: scikit-learn metrics, the classification report, and plots.

`evaluate_run` writes into the run directory:

    metrics.json                accuracy, macro precision/recall/F1, per-class figures
    classification_report.txt   scikit-learn's text report
    confusion_matrix.png, training_curves.png, misclassified.png
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    precision_recall_fscore_support,
)

from fmnist import dataset
from fmnist.errors import UserError
from fmnist.train import plots

METRICS_FILE = "metrics.json"
REPORT_FILE = "classification_report.txt"


def compute_metrics(
    labels: np.ndarray, predicted: np.ndarray, class_names: list[str] | tuple[str, ...]
) -> dict[str, Any]:
    """Accuracy, macro precision/recall/F1 and per-class figures, all from scikit-learn."""
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


def predict_probabilities(model: Any, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """The Keras model's class probabilities for uint8 images [N, 28, 28]."""
    from fmnist.train.model import preprocess

    return np.asarray(model.predict(preprocess(images), batch_size=batch_size, verbose=0))


def load_run_model(run_dir: Path) -> Any:
    """Load RUN/model.keras, with a clear error when it is missing or unreadable."""
    import keras

    from fmnist.train.train import MODEL_FILE

    path = run_dir / MODEL_FILE
    if not path.is_file():
        raise UserError(f"{run_dir}: no {MODEL_FILE} (not a training run directory?)")
    try:
        return keras.models.load_model(path)
    except Exception as err:  # Keras raises many types for a corrupt archive
        raise UserError(f"{path}: cannot load the Keras model: {err}") from None


def text_report(
    labels: np.ndarray, predicted: np.ndarray, class_names: list[str] | tuple[str, ...]
) -> str:
    """scikit-learn's classification report, four digits."""
    return classification_report(
        labels, predicted, target_names=list(class_names), digits=4, zero_division=0
    )


def evaluate_run(run_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> dict:
    """Evaluate RUN/model.keras on the 10,000 test images; write metrics, report and plots."""
    from fmnist.train.train import HISTORY_FILE, RUN_FILE

    run_dir = Path(run_dir)
    model = load_run_model(run_dir)
    if data_dir is None and (run_dir / RUN_FILE).is_file():
        data_dir = json.loads((run_dir / RUN_FILE).read_text()).get("data_dir")
        if data_dir and not Path(data_dir).is_dir():
            data_dir = None  # trained elsewhere: the usual lookup ($FMNIST_DATA_DIR, ...)
    test = dataset.load_test(data_dir)
    class_names = dataset.CLASS_NAMES

    probabilities = predict_probabilities(model, test.images)
    predicted = probabilities.argmax(axis=1)
    metrics = compute_metrics(test.labels, predicted, class_names)
    (run_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    report = text_report(test.labels, predicted, class_names)
    (run_dir / REPORT_FILE).write_text(report)

    matrix = confusion_matrix(test.labels, predicted, labels=list(range(len(class_names))))
    plots.confusion_matrix_plot(matrix, class_names, run_dir / "confusion_matrix.png")
    plots.misclassified_grid(
        test.images,
        test.labels,
        predicted,
        probabilities,
        class_names,
        run_dir / "misclassified.png",
    )
    if (run_dir / HISTORY_FILE).is_file():
        plots.training_curves(run_dir / HISTORY_FILE, run_dir / "training_curves.png")
    metrics["classification_report"] = report
    return metrics
