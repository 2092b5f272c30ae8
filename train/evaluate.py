"""Final evaluation on the test set: scikit-learn metrics, the classification report, and plots,
written into the run directory (fmnist.run_dir) next to the model."""

from __future__ import annotations

import os

from sklearn.metrics import confusion_matrix

from fmnist import dataset
from fmnist.metrics import compute_metrics, text_report
from fmnist.preprocessing import predict_probabilities
from fmnist.run_dir import RunDir
from fmnist.train import plots


def evaluate_run(run_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> dict:
    """Evaluate RUN/model.keras on the 10,000 test images; write metrics, report and plots."""
    run = RunDir(run_dir)
    model = run.load_model()
    test = dataset.load_test(data_dir or run.data_dir())
    class_names = dataset.CLASS_NAMES

    probabilities = predict_probabilities(model, test.images)
    predicted = probabilities.argmax(axis=1)
    metrics = compute_metrics(test.labels, predicted, class_names)
    run.write_metrics(metrics)
    report = text_report(test.labels, predicted, class_names)
    run.write_report(report)

    matrix = confusion_matrix(test.labels, predicted, labels=list(range(len(class_names))))
    plots.confusion_matrix_plot(matrix, class_names, run.confusion_matrix_plot)
    plots.misclassified_grid(
        test.images,
        test.labels,
        predicted,
        probabilities,
        class_names,
        run.misclassified_plot,
    )
    if run.history_path.is_file():
        plots.training_curves(run.history_path, run.training_curves_plot)
    metrics["classification_report"] = report
    return metrics
