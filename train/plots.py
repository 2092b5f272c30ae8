"""Plots a person would rather look at: confusion matrix, training curves, misclassified images."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import ConfusionMatrixDisplay

DPI = 120
MISTAKES_SHOWN = 36


def new_figure(rows: int, cols: int, figsize: tuple[float, float]) -> tuple[Figure, np.ndarray]:
    """A figure and its [rows, cols] axes, made without pyplot: no backend is chosen or
    changed, so plotting to files never disturbs a notebook's inline display."""
    fig = Figure(figsize=figsize, dpi=DPI)
    return fig, fig.subplots(rows, cols, squeeze=False)


def confusion_matrix_plot(
    matrix: np.ndarray, class_names: Sequence[str], path: Path, title: str = "Confusion matrix"
) -> Path:
    """Row-normalised confusion matrix (recall per true class) with the raw counts annotated."""
    fig, axes = new_figure(1, 1, (8.5, 7.5))
    ax = axes[0, 0]
    draw_confusion_matrix(ax, matrix, class_names, title)
    fig.tight_layout()
    fig.savefig(path)
    return path


def draw_confusion_matrix(ax, matrix: np.ndarray, class_names: Sequence[str], title: str) -> None:
    totals = matrix.sum(axis=1, keepdims=True).clip(min=1)
    normalised = matrix / totals
    display = ConfusionMatrixDisplay(normalised, display_labels=list(class_names))
    display.plot(ax=ax, cmap="Blues", values_format=".0%", colorbar=False, xticks_rotation=45)
    for text in display.text_.ravel():
        text.set_fontsize(7)
    ax.set_title(f"{title} (accuracy {np.trace(matrix) / matrix.sum():.2%})")
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")


def read_history(history_csv: Path) -> dict[str, list[float]]:
    with open(history_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {key: [float(row[key]) for row in rows] for key in (rows[0] if rows else {})}


def training_curves(history_csv: Path, path: Path) -> Path:
    """Loss and accuracy per epoch for training and validation, best epoch marked."""
    history = read_history(history_csv)
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    fig, axes = new_figure(1, 2, (11, 4))
    axes = axes[0]
    for ax, metric, label in ((axes[0], "loss", "Loss"), (axes[1], "accuracy", "Accuracy")):
        ax.plot(epochs, history[metric], label="train", color="tab:blue")
        ax.plot(epochs, history[f"val_{metric}"], label="validation", color="tab:orange")
        ax.set_xlabel("Epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if len(epochs):
        best = int(np.argmin(history["val_loss"]))
        for ax in axes:
            ax.axvline(
                epochs[best],
                color="grey",
                linestyle="--",
                linewidth=1,
                label=f"best epoch ({epochs[best]})",
            )
        axes[1].set_title(f"Best validation accuracy {history['val_accuracy'][best]:.2%}")
    axes[0].set_title("Loss")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path)
    return path


def misclassified_grid(
    images: np.ndarray,
    labels: np.ndarray,
    predicted: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    path: Path,
    count: int = MISTAKES_SHOWN,
    out_of: tuple[int, int] | None = None,
) -> Path:
    """The most confidently wrong images (uint8 [N, H, W] or [N, H, W, C]), with true and
    predicted labels. `out_of` (wrong, total) is for images already narrowed to mistakes."""
    wrong = np.flatnonzero(predicted != labels)
    order = wrong[np.argsort(-probabilities[wrong, predicted[wrong]])][:count]
    cols = 6
    rows = max(1, int(np.ceil(len(order) / cols)))
    fig, axes = new_figure(rows, cols, (cols * 1.9, rows * 2.1))
    for ax in axes.ravel():
        ax.axis("off")
    for ax, index in zip(axes.ravel(), order, strict=False):
        _show(ax, images[index])
        ax.set_title(
            f"true: {class_names[labels[index]]}\npred: {class_names[predicted[index]]} "
            f"({probabilities[index, predicted[index]]:.0%})",
            fontsize=7,
            color="firebrick",
        )
    wrong_count, total = out_of or (len(wrong), len(labels))
    fig.suptitle(f"Most confident mistakes ({wrong_count} of {total} test images wrong)")
    fig.tight_layout()
    fig.savefig(path)
    return path


def _show(ax, image: np.ndarray) -> None:
    """Grayscale as dark on light (as Fashion-MNIST is usually shown), colour as it is."""
    if image.ndim == 3 and image.shape[-1] == 3:
        ax.imshow(image)
    else:
        ax.imshow(image.reshape(image.shape[:2]), cmap="gray_r", vmin=0, vmax=255)
