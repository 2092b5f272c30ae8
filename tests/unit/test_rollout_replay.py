"""Replay's contracts without a server: which logged records are replayed and which are
counted, how Predict calls are batched and split back, how an error is charged to the
request that caused it, when replay gives up (exit 2), and the verdict. The endpoint is a
stand-in that classifies by pixel sum; tests/serving/test_replay.py runs real servers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fmnist.errors import EXIT_USAGE, UserError
from fmnist.rollout.answers import Rows, predict_rows
from fmnist.rollout.endpoint import decode_inputs
from fmnist.rollout.logs import RequestLog
from fmnist.rollout.replay import ReplayOptions, ReplayTolerance, Target, judge, replay
from fmnist.serving.client import ServingError
from fmnist.serving.wire import messages as pb
from fmnist.serving.wire import tensor_proto
from fmnist.serving.wire.prediction_log import prediction_log, write_prediction_logs
from fmnist.serving.wire.tensor_proto import to_tensor_proto

CLASSES = 4


def classify(images: np.ndarray, shift: int = 0) -> np.ndarray:
    """The stand-in model: class = (pixel sum + shift) mod 4, as one-hot-ish scores."""
    top = (images.reshape(len(images), -1).sum(1).astype(np.int64) + shift) % CLASSES
    probs = np.full((len(images), CLASSES), 0.1, np.float32)
    probs[np.arange(len(images)), top] = 0.7
    return probs


class StandIn:
    """An Endpoint's interface over the stand-in model; versions differ by `shifts`.
    Requests whose first pixel is 255 fail with INVALID_ARGUMENT; `missing` versions are
    NOT_FOUND."""

    api, address, model_name, output, quantization = "gRPC", "stand-in", "m", None, None
    grpc = True

    def __init__(self, shifts: dict[int | None, int], missing: tuple[int, ...] = ()) -> None:
        self.shifts, self.missing = shifts, missing
        self.calls: list[tuple[str, int, int | None]] = []  # (kind, rows, version)

    def predict(self, inputs, signature, *, version=None, label=None, dtypes=None):
        images = inputs["images"]
        self.calls.append(("batch", len(images), version))
        return Rows(**vars(self._answer(images, version))), version

    def send(self, method, request, *, version=None, label=None):
        images = decode_inputs(request)["images"]
        self.calls.append(("alone", len(images), version))
        return [self._answer(images, version)], version

    def _answer(self, images: np.ndarray, version: int | None) -> Rows:
        if version in self.missing:
            raise ServingError("NOT_FOUND", f"Servable not found: version {version}")
        if (images.reshape(len(images), -1)[:, 0] == 255).any():
            raise ServingError("INVALID_ARGUMENT", "a pixel the model refuses")
        return predict_rows({"probabilities": classify(images, self.shifts[version])})


def entry(
    images: np.ndarray, *, model: str = "m", version: int = 1, output_filter: tuple = ()
) -> pb.PredictionLog:
    """A logged Predict the stand-in model's version `version` answered."""
    request = pb.PredictRequest(output_filter=output_filter)
    request.model_spec.name = model
    request.inputs["images"].CopyFrom(to_tensor_proto(images))
    response = pb.PredictResponse()
    response.model_spec.name, response.model_spec.version.value = model, version
    # float_val, as a server answers (requests carry tensor_content, as clients send them)
    tensor_proto.fill_tensor_proto(classify(images), response.outputs["probabilities"])
    return prediction_log(request, response, timestamp_secs=1)


def images(count: int, seed: int = 0, size: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 200, (count, size, size), dtype=np.uint8)


def log_of(tmp_path: Path, entries: list, model: str | None = None) -> RequestLog:
    write_prediction_logs(tmp_path / "log.tfrecord", entries)
    return RequestLog([tmp_path / "log.tfrecord"], model)


LOOSE = ReplayTolerance(min_agreement=0, min_class_agreement=0, max_errors=10**6)


def test_the_version_that_wrote_the_log_agrees_with_it(tmp_path: Path) -> None:
    log = log_of(tmp_path, [entry(images(1, seed=i)) for i in range(40)])
    result = replay(log, StandIn({1: 0, None: 0}), options=ReplayOptions(latency_samples=0))
    assert (result.logged_calls, result.replayed, result.answers) == (40, 40, 40)
    assert result.agreement == 1.0 and result.passed and result.exit_code == 0
    assert result.logged_versions == {"1": 40} and result.max_score_diff == 0


def test_another_version_fails_and_says_what_each_class_became(tmp_path: Path) -> None:
    log = log_of(tmp_path, [entry(images(1, seed=i)) for i in range(40)])
    result = replay(
        log, StandIn({2: 1}), Target(version=2), options=ReplayOptions(latency_samples=0)
    )
    assert result.agreement == 0.0 and not result.passed and result.exit_code == 1
    assert all(set(row["became"]) == {str((int(row["class"]) + 1) % 4)} for row in result.per_class)
    assert result.answered_versions == {"2": 40}


def test_predict_calls_go_in_batches_of_at_most_batch_rows(tmp_path: Path) -> None:
    log = log_of(tmp_path, [entry(images(3, seed=i)) for i in range(20)])  # 60 examples
    endpoint = StandIn({None: 0})
    result = replay(log, endpoint, options=ReplayOptions(batch_rows=25, latency_samples=0))
    assert [rows for _, rows, _ in endpoint.calls] == [24, 24, 12]
    assert result.answers == 60 and result.agreement == 1.0


def test_requests_of_other_shapes_or_with_an_output_filter_are_not_mixed(tmp_path: Path) -> None:
    entries = [entry(images(1, seed=i)) for i in range(3)]
    entries += [entry(images(1, seed=i, size=5)) for i in range(3)]
    entries += [entry(images(1), output_filter=("probabilities",))]
    endpoint = StandIn({None: 0})
    replay(log_of(tmp_path, entries), endpoint, options=ReplayOptions(latency_samples=0))
    assert sorted(endpoint.calls) == [("alone", 1, None), ("batch", 3, None), ("batch", 3, None)]


def test_tensors_in_any_encoding_join_one_batch(tmp_path: Path) -> None:
    """tensor_content inputs and float_val scores (as TF Serving logs them) are stacked raw;
    typed-field inputs and tensor_content scores are decoded first; all in one call."""
    entries = [entry(images(1, seed=i)) for i in range(4)]
    for logged in entries[:2]:
        request, response = logged.predict_log.request, logged.predict_log.response
        pixels = tensor_proto.to_ndarray(request.inputs["images"])
        request.inputs["images"].Clear()
        tensor_proto.fill_tensor_proto(pixels, request.inputs["images"])  # int_val
        scores = tensor_proto.to_ndarray(response.outputs["probabilities"])
        response.outputs["probabilities"].CopyFrom(to_tensor_proto(scores))  # tensor_content
    assert entries[0].predict_log.request.inputs["images"].int_val
    assert entries[2].predict_log.response.outputs["probabilities"].float_val
    endpoint = StandIn({None: 0})
    result = replay(log_of(tmp_path, entries), endpoint, options=ReplayOptions(latency_samples=0))
    assert result.agreement == 1.0 and result.answers == 4 and result.max_score_diff == 0
    assert endpoint.calls == [("batch", 4, None)]


def test_a_failing_batch_is_resent_request_by_request(tmp_path: Path) -> None:
    bad = images(1, seed=3)
    bad[0, 0, 0] = 255
    entries = [entry(images(1, seed=i)) for i in range(3)] + [entry(bad)]
    endpoint = StandIn({None: 0})
    result = replay(
        log_of(tmp_path, entries),
        endpoint,
        tolerance=LOOSE,
        options=ReplayOptions(latency_samples=0),
    )
    assert result.errors == {"INVALID_ARGUMENT": 1} and result.replayed == 4
    assert result.answers == 3 and result.agreement == 1.0
    assert "log.tfrecord#3: a pixel the model refuses" in result.first_errors["INVALID_ARGUMENT"]
    assert [kind for kind, _, _ in endpoint.calls] == ["batch", "alone", "alone", "alone", "alone"]
    assert judge(result, ReplayTolerance()) == [
        "1 requests failed (INVALID_ARGUMENT 1), more than 0"
    ]


def test_a_target_that_fails_every_request_fails_the_check(tmp_path: Path) -> None:
    bad = images(3)
    bad[:, 0, 0] = 255
    log = log_of(tmp_path, [entry(bad[i : i + 1]) for i in range(3)])
    result = replay(log, StandIn({None: 0}), options=ReplayOptions(latency_samples=0))
    assert result.errors == {"INVALID_ARGUMENT": 3} and result.answers == 0
    assert result.exit_code == 1 and result.agreement == 0.0


def test_a_target_that_is_not_there_stops_the_replay(tmp_path: Path) -> None:
    log = log_of(tmp_path, [entry(images(1))])
    with pytest.raises(ServingError, match="Servable not found") as raised:
        replay(log, StandIn({}, missing=(9,)), Target(version=9))
    assert raised.value.exit_code == EXIT_USAGE


def test_other_models_and_other_kinds_are_counted_not_replayed(tmp_path: Path) -> None:
    session = pb.PredictionLog()
    session.session_run_log.request.model_spec.name = "m"
    no_answer = pb.PredictionLog()
    no_answer.predict_log.request.model_spec.name = "m"
    entries = [entry(images(1)), entry(images(1), model="other"), session, no_answer]
    log = log_of(tmp_path, entries)
    result = replay(log, StandIn({None: 0}), options=ReplayOptions(latency_samples=0))
    assert log.model_name == "m"
    assert result.replayed == 1 and result.other_models == {"other": 1}
    assert result.skipped == {"no_logged_answer": 1, "other_model": 1, "unsupported_method": 1}
    assert any("session_run_log is not replayed" in note for note in result.notes)


def test_the_model_is_the_first_logged_one_unless_named(tmp_path: Path) -> None:
    entries = [entry(images(1), model="first"), entry(images(1), model="second")]
    assert log_of(tmp_path, entries).resolve_model_name() == "first"
    assert log_of(tmp_path, entries, "second").resolve_model_name() == "second"


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([], "nothing to replay in 1 file: 0 records read"),
        ([pb.PredictionLog()], "skipped: unsupported_method 1"),
    ],
    ids=["empty log", "nothing replayable"],
)
def test_a_log_with_nothing_to_replay_is_an_exit_2(tmp_path: Path, entries, message) -> None:
    log = log_of(tmp_path, entries)
    with pytest.raises(UserError, match=message) as raised:
        log.resolve_model_name()
    assert raised.value.exit_code == EXIT_USAGE


def test_a_log_of_another_model_only_names_it(tmp_path: Path) -> None:
    log = log_of(tmp_path, [entry(images(1), model="other")], model="m")
    with pytest.raises(UserError, match=r"models in the logs: other"):
        replay(log, StandIn({None: 0}))


def test_latency_is_measured_against_the_logged_version_side_by_side(tmp_path: Path) -> None:
    log = log_of(tmp_path, [entry(images(1, seed=i)) for i in range(30)])
    endpoint = StandIn({1: 0, 2: 0})
    result = replay(log, endpoint, Target(version=2), options=ReplayOptions(latency_samples=10))
    latency = result.latency
    assert latency["samples"] == 10 and latency["target"]["n"] == latency["logged"]["n"] == 10
    assert latency["reference"] == "logged version 1"
    assert latency["logged"]["answers_as_logged"] == 10
    alone = [version for kind, _, version in endpoint.calls if kind == "alone"]
    assert alone[:4] == [2, 1, 1, 2]  # alternating which side goes first


def test_latency_says_when_the_logged_version_is_gone(tmp_path: Path) -> None:
    log = log_of(tmp_path, [entry(images(1, seed=i)) for i in range(5)])
    result = replay(log, StandIn({2: 0}, missing=(1,)), Target(version=2))
    assert result.latency["logged"] == {"n": 0}
    assert result.latency["note"].startswith("the reference is not served")
    assert result.latency["target"]["n"] == 5


def test_classes_with_few_answers_are_shown_not_judged(tmp_path: Path) -> None:
    log = log_of(tmp_path, [entry(images(1, seed=i)) for i in range(40)])
    result = replay(
        log, StandIn({None: 1}), tolerance=LOOSE, options=ReplayOptions(latency_samples=0)
    )
    strict = ReplayTolerance(min_agreement=0, min_class_support=11)
    judged = [row for row in result.per_class if row["logged"] >= 11]
    assert len(judge(result, strict)) == len(judged) > 0
    assert judge(result, ReplayTolerance(min_agreement=0, min_class_support=1000)) == []


def test_a_score_limit_names_where_the_largest_change_was(tmp_path: Path) -> None:
    log = log_of(tmp_path, [entry(images(1, seed=i)) for i in range(4)])
    result = replay(
        log, StandIn({None: 1}), tolerance=LOOSE, options=ReplayOptions(latency_samples=0)
    )
    failures = judge(
        result, ReplayTolerance(min_agreement=0, min_class_agreement=0, max_score_diff=0.1)
    )
    assert failures == [
        f"a class score moved by 0.6 (at {result.max_score_diff_at}), more than 0.1"
    ]
