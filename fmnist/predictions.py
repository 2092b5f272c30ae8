"""Classifier answers as rows a person or a script reads: the top k classes of each input.

One definition for every command that prints predictions (`fmnist-edge classify`,
`fmnist predict`), so their JSON has the same shape. TF-free (numpy only).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fmnist.errors import UserError


def top_k_rows(
    names: Sequence[str],
    probabilities: np.ndarray,
    class_names: Sequence[str],
    k: int,
    *,
    decimals: int | None = None,
) -> list[dict[str, Any]]:
    """`[{"path": name, "predictions": [{class_id, class_name, probability}, ...]}]`, the
    k most probable classes of each row of `probabilities` [N, C], most probable first.

    k larger than C gives all C classes; `decimals` rounds the probabilities (None keeps them).
    """
    if k < 1:
        raise UserError(f"k must be >= 1, got {k}")
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(class_names):
        raise UserError(
            f"probabilities of shape {list(probabilities.shape)} do not give one score for "
            f"each of the {len(class_names)} classes"
        )
    rows = []
    for name, probs in zip(names, probabilities, strict=True):
        top = probs.argsort()[::-1][:k]
        rows.append(
            {
                "path": name,
                "predictions": [
                    {
                        "class_id": int(i),
                        "class_name": class_names[i],
                        "probability": float(probs[i])
                        if decimals is None
                        else round(float(probs[i]), decimals),
                    }
                    for i in top
                ],
            }
        )
    return rows
