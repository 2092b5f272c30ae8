"""What a logged and a replayed answer say, in one form, and how they agree: class scores,
Classify's classes and values, added up per logged class."""

from __future__ import annotations

import numpy as np
import pytest

from fmnist.rollout.answers import OTHER_ANSWER, NotComparable, Rows, Tally, predict_rows


def scores(*tops: int, classes: int = 4, peak: float = 0.7) -> Rows:
    array = np.full((len(tops), classes), (1 - peak) / (classes - 1))
    array[np.arange(len(tops)), tops] = peak
    return Rows(scores=array, keys=tuple(str(i) for i in range(classes)))


@pytest.mark.parametrize(
    ("outputs", "output", "expected"),
    [
        ({"probabilities": [[0.1, 0.9]], "scores": [[5.0, 1.0]]}, None, "probabilities"),
        ({"scores": [[0.2, 0.8]], "class_ids": [1]}, None, "scores"),
        ({"logits": [[0.3, 0.7]], "names": ["b"]}, None, "logits"),
        ({"probabilities": [[0.1, 0.9]], "other": [[0.6, 0.4]]}, "other", "other"),
    ],
    ids=["probabilities first", "then scores", "the only numeric output", "named"],
)
def test_the_class_score_output(outputs, output, expected) -> None:
    arrays = {name: np.asarray(value) for name, value in outputs.items()}
    rows = predict_rows(arrays, output)
    np.testing.assert_array_equal(rows.scores, arrays[expected].astype(np.float64))
    assert rows.keys == ("0", "1")


def test_int8_scores_read_as_tflite_softmax_probabilities() -> None:
    rows = predict_rows({"scores": np.array([[-128, 127, 0]], np.int8)})
    np.testing.assert_allclose(rows.scores, [[0.0, 255 / 256, 0.5]])


def test_a_manifest_quantization_overrides_the_softmax_constants() -> None:
    rows = predict_rows({"scores": np.array([[10, 20]], np.int8)}, quantization=(0.5, 10))
    np.testing.assert_allclose(rows.scores, [[0.0, 5.0]])


@pytest.mark.parametrize(
    "shape", [(3,), (3, 1)], ids=["one value per example", "a column of values"]
)
def test_one_number_per_example_is_a_value(shape) -> None:
    rows = predict_rows({"y": np.arange(3, dtype=np.float32).reshape(shape)})
    assert rows.scores is None and rows.values.tolist() == [0.0, 1.0, 2.0]


@pytest.mark.parametrize(
    ("outputs", "output", "message"),
    [
        ({"a": [[1.0, 2.0]], "b": [[3.0, 4.0]]}, None, "several outputs (a, b): name the one"),
        ({"names": [b"x"]}, None, "no numeric output (outputs: names)"),
        ({"probabilities": [[0.5, 0.5]]}, "prob", "no output 'prob' (outputs: probabilities)"),
        ({"probabilities": np.zeros((1, 2, 3))}, None, "of shape [1, 2, 3] is neither"),
    ],
    ids=["ambiguous", "no numbers", "unknown name", "rank 3"],
)
def test_answers_without_class_scores_are_not_comparable(outputs, output, message) -> None:
    arrays = {name: np.asarray(value) for name, value in outputs.items()}
    with pytest.raises(NotComparable) as raised:
        predict_rows(arrays, output)
    assert message in str(raised.value)


def test_agreement_per_logged_class_and_what_it_became() -> None:
    tally = Tally()
    tally.add(scores(0, 0, 1, 2), scores(0, 3, 1, 1), ["a#0", "a#1", "a#2", "a#3"])
    assert (tally.answers, tally.agreed) == (4, 2)
    rows = {row["class"]: row for row in tally.per_class()}
    assert rows["0"] == {
        "class": "0",
        "logged": 2,
        "agreed": 1,
        "became": {"3": 1},
        "agreement": 0.5,
    }
    assert rows["2"]["became"] == {"1": 1} and rows["1"]["agreement"] == 1.0


def test_the_largest_score_difference_and_where_it_was() -> None:
    tally = Tally()
    tally.add(scores(0, 1), scores(0, 2), ["log#0", "log#1"])
    tally.add(scores(3), scores(3, peak=0.6), ["log#2"])
    assert tally.max_score_diff == pytest.approx(0.6)
    assert tally.max_score_diff_at == "log#1"


def test_classify_answers_compare_by_label_whatever_their_order() -> None:
    tally = Tally()
    logged = Rows(classes=[{"cat": 0.8, "dog": 0.2}, {"cat": 0.4, "dog": 0.6}])
    replayed = Rows(classes=[{"dog": 0.3, "cat": 0.7}, {"cat": 0.9, "dog": 0.1}])
    tally.add(logged, replayed, ["c#0", "c#1"])
    assert tally.pairs == {("cat", "cat"): 1, ("dog", "cat"): 1}
    assert tally.max_score_diff == pytest.approx(0.5) and tally.max_score_diff_at == "c#1"


def test_values_agree_within_the_relative_tolerance() -> None:
    tally = Tally(value_rtol=1e-3)
    logged = Rows(values=np.array([100.0, 100.0, 0.0]))
    tally.add(logged, Rows(values=np.array([100.05, 100.2, 1e-7])), ["v#0", "v#1", "v#2"])
    assert (tally.values, tally.values_agreed, tally.answers, tally.agreed) == (3, 2, 3, 2)
    assert tally.max_value_diff == pytest.approx(0.2) and tally.max_value_diff_at == "v#1"


@pytest.mark.parametrize(
    "replayed",
    [None, Rows(values=np.array([1.0, 2.0])), scores(0)],
    ids=["no answer", "values for classes", "fewer examples"],
)
def test_an_answer_of_another_kind_disagrees_on_every_example(replayed) -> None:
    tally = Tally()
    tally.add(scores(1, 2), replayed, ["x#0", "x#1"])
    assert tally.pairs == {("1", OTHER_ANSWER): 1, ("2", OTHER_ANSWER): 1}
    assert tally.agreed == 0


def test_more_classes_in_the_replay_compare_by_class_id() -> None:
    tally = Tally()
    tally.add(scores(1, classes=3), scores(1, classes=5), ["x#0"])
    assert tally.pairs == {("1", "1"): 1}


def test_per_class_rows_come_in_class_order() -> None:
    tally = Tally()
    tally.add(scores(10, 2, 0, classes=11), scores(10, 2, 0, classes=11), ["a", "b", "c"])
    tally.add(Rows(classes=[{"cat": 1.0}]), Rows(classes=[{"cat": 1.0}]), ["d"])
    assert [row["class"] for row in tally.per_class()] == ["0", "2", "10", "cat"]
