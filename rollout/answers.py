"""What a logged answer and a replayed answer say, in one form, and how they compare.

Per example an answer is either a class (Predict's class-score output, Classify's classes:
the top class and every class's score) or a value (Regress, or a Predict output of one
number per example). Two class answers agree when their top classes are the same; two
values agree within a relative tolerance. `Tally` adds up agreement per logged class and
the largest score difference, for a whole replay.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fmnist.serving.wire import tensor_proto
from fmnist.serving.wire.dtypes import numpy_dtype
from fmnist.serving.wire.status import StatusError

# TFLite's quantization spec fixes a softmax output's int8 scale and zero point (uint8:
# zero point 0), so int8 `scores` of a TFLite-served classifier read as probabilities
# without its manifest; a bundle's manifest, when given, is used instead.
SOFTMAX_QUANTIZATION = {np.dtype(np.int8): (1 / 256, -128), np.dtype(np.uint8): (1 / 256, 0)}
# Outputs taken as class scores, in this order, when none is named.
SCORE_OUTPUTS = ("probabilities", "scores")
OTHER_ANSWER = "(other answer)"  # the replayed answer has no comparable class


class NotComparable(Exception):
    """An answer holds nothing this replay can compare; the message says why."""


@dataclass
class Rows:
    """The answers of one call (or one task of a MultiInference): exactly one of `scores`
    (float64 [n, C], columns keyed by `keys`), `classes` (one {class: score} per example,
    for Classify, whose examples may list different classes) or `values` (float64 [n])."""

    scores: np.ndarray | None = None
    keys: tuple[str, ...] = ()
    classes: list[dict[str, float]] | None = None
    values: np.ndarray | None = None

    def __len__(self) -> int:
        for part in (self.scores, self.classes, self.values):
            if part is not None:
                return len(part)
        return 0

    def as_classes(self) -> list[dict[str, float]] | None:
        if self.classes is not None:
            return self.classes
        if self.scores is not None:
            return [dict(zip(self.keys, row.tolist(), strict=True)) for row in self.scores]
        return None


def predict_rows(
    outputs: dict[str, np.ndarray],
    output: str | None = None,
    quantization: tuple[float, int] | None = None,
) -> Rows:
    """A Predict answer's rows from its class-score output (`output`, else `probabilities`,
    else `scores`, else its only numeric output); int8/uint8 scores are dequantized."""
    name = output or score_output({n: np.asarray(a).dtype for n, a in outputs.items()})
    if name not in outputs:
        raise NotComparable(f"no output {name!r} (outputs: {', '.join(sorted(outputs))})")
    array = np.asarray(outputs[name])
    if array.dtype in SOFTMAX_QUANTIZATION:
        scale, zero_point = quantization or SOFTMAX_QUANTIZATION[array.dtype]
        array = (array.astype(np.float64) - zero_point) * scale
    elif array.dtype.kind not in "fiu":
        raise NotComparable(f"output {name!r} holds {array.dtype} values, not scores")
    array = array.astype(np.float64, copy=False)
    if array.ndim == 2 and array.shape[1] >= 2:
        return Rows(scores=array, keys=class_ids(array.shape[1]))
    if array.ndim == 1 or (array.ndim == 2 and array.shape[1] == 1):
        return Rows(values=array.reshape(-1))
    raise NotComparable(
        f"output {name!r} of shape {list(array.shape)} is neither class scores [N, C] "
        "nor one value per example"
    )


@functools.cache
def class_ids(count: int) -> tuple[str, ...]:
    """The class keys of a score output with `count` columns: "0", "1", ..."""
    return tuple(str(i) for i in range(count))


def score_output(dtypes: dict[str, np.dtype]) -> str:
    """The output taken as class scores, from the outputs' names and dtypes."""
    for name in SCORE_OUTPUTS:
        if name in dtypes:
            return name
    numeric = sorted(n for n, dtype in dtypes.items() if dtype.kind in "fiu")
    if len(numeric) == 1:
        return numeric[0]
    if not numeric:
        raise NotComparable(f"no numeric output (outputs: {', '.join(sorted(dtypes))})")
    raise NotComparable(
        f"several outputs ({', '.join(numeric)}): name the one to compare with --output"
    )


def response_rows(
    method: str,
    response: Any,
    output: str | None = None,
    quantization: tuple[float, int] | None = None,
) -> list[Rows]:
    """A response's rows: one `Rows` per MultiInference task, else one."""
    if method == "Predict":  # only the score output is read: the others may be large
        try:
            dtypes = {n: numpy_dtype(t.dtype) for n, t in response.outputs.items()}
            name = output or score_output(dtypes)
            if name not in dtypes:
                raise NotComparable(f"no output {name!r} (outputs: {', '.join(sorted(dtypes))})")
            scores = tensor_proto.to_ndarray(response.outputs[name])
        except StatusError as err:
            raise NotComparable(f"unreadable output tensor: {err.message}") from None
        return [predict_rows({name: scores}, name, quantization)]
    if method == "Classify":
        return [_classification_rows(response.result)]
    if method == "Regress":
        return [_regression_rows(response.result)]
    rows = []
    for result in response.results:  # MultiInference
        kind = result.WhichOneof("result")
        if kind == "classification_result":
            rows.append(_classification_rows(result.classification_result))
        elif kind == "regression_result":
            rows.append(_regression_rows(result.regression_result))
        else:
            raise NotComparable("a MultiInference result holds neither classes nor values")
    return rows


def _classification_rows(result: Any) -> Rows:
    """Classify answers: {label: score}; classes without labels are keyed by position."""
    return Rows(
        classes=[
            {c.label or str(i): float(c.score) for i, c in enumerate(item.classes)}
            for item in result.classifications
        ]
    )


def _regression_rows(result: Any) -> Rows:
    return Rows(values=np.array([r.value for r in result.regressions], np.float64))


@dataclass
class Tally:
    """Agreement between logged and replayed answers, added up over a replay."""

    value_rtol: float = 1e-3  # values agree within this relative difference (and 1e-6)
    pairs: Counter[tuple[str, str]] = field(default_factory=Counter)  # (logged, replayed) top
    values: int = 0
    values_agreed: int = 0
    max_score_diff: float = 0.0
    max_score_diff_at: str = ""
    score_diff_sum: float = 0.0
    score_diffs: int = 0  # class answers whose scores were compared
    max_value_diff: float = 0.0
    max_value_diff_at: str = ""

    @property
    def answers(self) -> int:
        return sum(self.pairs.values()) + self.values

    @property
    def agreed(self) -> int:
        return sum(n for (logged, new), n in self.pairs.items() if logged == new) + (
            self.values_agreed
        )

    def add(self, logged: Rows, replayed: Rows | None, wheres: list[str]) -> None:
        """Compare one call's (or batch's) rows; `wheres[i]` names example i's record.
        `replayed` None, or rows of another kind or count, disagree on every example."""
        if replayed is None or len(replayed) != len(logged):
            self._disagree(logged)
        elif (
            logged.scores is not None
            and replayed.scores is not None
            and (logged.keys == replayed.keys)
        ):
            self._add_scores(logged, replayed.scores, wheres)
        elif logged.values is not None and replayed.values is not None:
            self._add_values(logged.values, replayed.values, wheres)
        elif logged.values is None and replayed.values is None:
            self._add_classes(logged.as_classes() or [], replayed.as_classes() or [], wheres)
        else:
            self._disagree(logged)

    def _add_scores(self, logged: Rows, replayed: np.ndarray, wheres: list[str]) -> None:
        keys, scores = logged.keys, logged.scores
        logged_top, replayed_top = scores.argmax(1), replayed.argmax(1)
        pairs, counts = np.unique(logged_top * len(keys) + replayed_top, return_counts=True)
        for pair, count in zip(pairs.tolist(), counts.tolist(), strict=True):
            self.pairs[keys[pair // len(keys)], keys[pair % len(keys)]] += count
        self._note_score_diffs(np.abs(scores - replayed).max(1), wheres)

    def _add_classes(
        self, logged: list[dict[str, float]], replayed: list[dict[str, float]], wheres: list[str]
    ) -> None:
        diffs = []
        for old, new in zip(logged, replayed, strict=True):
            self.pairs[_top(old), _top(new)] += 1
            keys = old.keys() | new.keys()
            diffs.append(max((abs(old.get(k, 0.0) - new.get(k, 0.0)) for k in keys), default=0))
        self._note_score_diffs(np.array(diffs, np.float64), wheres)

    def _note_score_diffs(self, diffs: np.ndarray, wheres: list[str]) -> None:
        if not len(diffs):
            return
        self.score_diff_sum += float(diffs.sum())
        self.score_diffs += len(diffs)
        worst = int(diffs.argmax())
        if diffs[worst] > self.max_score_diff:
            self.max_score_diff, self.max_score_diff_at = float(diffs[worst]), wheres[worst]

    def _add_values(self, logged: np.ndarray, replayed: np.ndarray, wheres: list[str]) -> None:
        diffs = np.abs(logged - replayed)
        self.values += len(diffs)
        self.values_agreed += int((diffs <= 1e-6 + self.value_rtol * np.abs(logged)).sum())
        if len(diffs) and diffs.max() > self.max_value_diff:
            worst = int(diffs.argmax())
            self.max_value_diff, self.max_value_diff_at = float(diffs[worst]), wheres[worst]

    def _disagree(self, logged: Rows) -> None:
        classes = logged.as_classes()
        if classes is None:
            self.values += len(logged)
            return
        for old in classes:
            self.pairs[_top(old), OTHER_ANSWER] += 1

    def per_class(self) -> list[dict[str, Any]]:
        """Per logged top class: answers, how many the replay kept, and what the others
        became, most frequent first; classes in key order (numeric keys as numbers)."""
        rows: dict[str, dict[str, Any]] = {}
        for (logged, new), count in self.pairs.items():
            row = rows.setdefault(logged, {"class": logged, "logged": 0, "agreed": 0, "became": {}})
            row["logged"] += count
            if new == logged:
                row["agreed"] += count
            else:
                row["became"][new] = row["became"].get(new, 0) + count
        for row in rows.values():
            row["agreement"] = row["agreed"] / row["logged"]
            row["became"] = dict(sorted(row["became"].items(), key=lambda item: -item[1]))
        return [rows[key] for key in sorted(rows, key=_class_order)]


def _top(scores: dict[str, float]) -> str:
    return max(scores, key=scores.__getitem__) if scores else OTHER_ANSWER


def _class_order(key: str) -> tuple[int, int, str]:
    return (0, int(key), "") if key.isdigit() else (1, 0, key)
