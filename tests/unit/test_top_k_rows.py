"""Top-k prediction rows, the JSON shape `fmnist-edge classify` and `fmnist predict` print."""

from __future__ import annotations

import numpy as np
import pytest

from fmnist.errors import UserError
from fmnist.predictions import top_k_rows

NAMES = ["a", "b", "c"]
PROBS = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]], dtype=np.float32)


def test_rows_list_the_k_most_probable_classes_first() -> None:
    rows = top_k_rows(["x.png", "y.png"], PROBS, NAMES, 2)
    assert [r["path"] for r in rows] == ["x.png", "y.png"]
    assert [p["class_name"] for p in rows[0]["predictions"]] == ["b", "c"]
    assert [p["class_id"] for p in rows[1]["predictions"]] == [0, 2]
    assert rows[0]["predictions"][0]["probability"] == pytest.approx(0.7)


def test_k_above_the_class_count_gives_every_class() -> None:
    rows = top_k_rows(["x"], PROBS[:1], NAMES, 10)
    assert len(rows[0]["predictions"]) == 3


def test_decimals_round_the_probabilities() -> None:
    rows = top_k_rows(["x"], np.array([[0.123456789, 0.0, 0.876543211]]), NAMES, 1, decimals=6)
    assert rows[0]["predictions"][0]["probability"] == 0.876543


def test_without_decimals_probabilities_are_plain_floats() -> None:
    (row,) = top_k_rows(["x"], PROBS[:1], NAMES, 1)
    assert type(row["predictions"][0]["probability"]) is float


@pytest.mark.parametrize("k", [0, -1])
def test_k_below_one_is_refused(k: int) -> None:
    with pytest.raises(UserError, match=f"k must be >= 1, got {k}"):
        top_k_rows(["x"], PROBS[:1], NAMES, k)


def test_scores_that_do_not_match_the_class_names_are_refused() -> None:
    with pytest.raises(UserError, match="do not give one score for each of the 3 classes"):
        top_k_rows(["x"], np.ones((1, 4)), NAMES, 1)
