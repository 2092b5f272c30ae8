"""Final evaluation on the test set: scikit-learn metrics, the classification report, and plots,
written into the run directory (fmnist.run_dir) next to the model. The test images stream
through in batches; only the most confident mistakes are kept for their plot."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix

from fmnist.metrics import compute_metrics, text_report
from fmnist.run_dir import RunDir
from fmnist.train import plots

BATCH = 1000  # what predict_probabilities used: the same batches, the same float sums


class MistakeKeeper:
    """The `count` most confidently wrong images seen so far, and how many were wrong."""

    def __init__(self, count: int) -> None:
        self.count, self.wrong = count, 0
        self.images: list[np.ndarray] = []
        self.rows: list[tuple[float, int, int, np.ndarray]] = []  # (confidence, true, pred, p)

    def add(self, images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray) -> None:
        predicted = probabilities.argmax(axis=1)
        for i in np.flatnonzero(predicted != labels):
            confidence = float(probabilities[i, predicted[i]])
            self.rows.append((confidence, int(labels[i]), int(predicted[i]), probabilities[i]))
            self.images.append(images[i])
            self.wrong += 1
        order = sorted(range(len(self.rows)), key=lambda k: -self.rows[k][0])[: self.count]
        self.rows = [self.rows[k] for k in order]
        self.images = [self.images[k] for k in order]

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """images, labels, predicted, probabilities of the kept mistakes."""
        images = np.stack(self.images) if self.images else np.zeros((0, 1, 1, 1), np.uint8)
        labels = np.array([r[1] for r in self.rows], dtype=np.int64)
        predicted = np.array([r[2] for r in self.rows], dtype=np.int64)
        probabilities = np.array([r[3] for r in self.rows]).reshape(len(self.rows), -1)
        return images, labels, predicted, probabilities


def predict_split(model: Any, data: Any, split: str, keeper: MistakeKeeper | None = None):
    """(labels, probabilities) of a split, streamed batch by batch through the model."""
    labels, probabilities = [], []
    for images, batch_labels in data.batches(split, BATCH):
        probs = np.asarray(model.predict(data.contract.scale(images), batch_size=BATCH, verbose=0))
        if keeper is not None:
            keeper.add(images, batch_labels, probs)
        labels.append(batch_labels)
        probabilities.append(probs)
    return np.concatenate(labels), np.concatenate(probabilities)


def evaluate_run(run_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> dict:
    """Evaluate RUN/model.keras on the test split of its data; write metrics, report, plots."""
    run = RunDir(run_dir)
    model = run.load_model()
    data = run.open_data(data_dir)
    class_names = data.class_names

    keeper = MistakeKeeper(plots.MISTAKES_SHOWN)
    labels, probabilities = predict_split(model, data, "test", keeper)
    predicted = probabilities.argmax(axis=1)
    metrics = compute_metrics(labels, predicted, class_names)
    run.write_metrics(metrics)
    report = text_report(labels, predicted, class_names)
    run.write_report(report)

    matrix = confusion_matrix(labels, predicted, labels=list(range(len(class_names))))
    plots.confusion_matrix_plot(matrix, class_names, run.confusion_matrix_plot)
    plots.misclassified_grid(
        *keeper.arrays(), class_names, run.misclassified_plot, out_of=(keeper.wrong, len(labels))
    )
    if run.history_path.is_file():
        plots.training_curves(run.history_path, run.training_curves_plot)
    metrics["classification_report"] = report
    return metrics
