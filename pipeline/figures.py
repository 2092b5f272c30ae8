"""Figures only the pipeline can draw: the float and int8 models side by side."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fmnist.train.plots import draw_confusion_matrix, new_figure


def confusion_side_by_side(
    float_matrix: np.ndarray, int8_matrix: np.ndarray, class_names: Sequence[str], path: Path
) -> Path:
    fig, axes = new_figure(1, 2, (16, 7.2))
    axes = axes[0]
    draw_confusion_matrix(axes[0], float_matrix, class_names, "Float (Keras)")
    draw_confusion_matrix(axes[1], int8_matrix, class_names, "Int8 TFLite")
    fig.tight_layout()
    fig.savefig(path)
    return path


def per_class_f1(
    float_f1: Sequence[float], int8_f1: Sequence[float], class_names: Sequence[str], path: Path
) -> Path:
    x = np.arange(len(class_names))
    fig, axes = new_figure(1, 1, (11, 4.2))
    ax = axes[0, 0]
    ax.bar(x - 0.2, float_f1, width=0.4, label="float", color="tab:blue")
    ax.bar(x + 0.2, int8_f1, width=0.4, label="int8 TFLite", color="tab:orange")
    ax.set_xticks(x, class_names, rotation=30, ha="right")
    low = max(0.0, min(min(float_f1), min(int8_f1)) - 0.05)
    ax.set_ylim(low, 1.0)
    ax.set_ylabel("F1 on the test set")
    ax.set_title("Per-class F1: float vs int8")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    return path
