"""Request batching (serving/server/servables/batching.py, batch_scheduler.py) against a
fake model that counts its calls.

No TensorFlow: the scheduler is pure Python, so its queue rules are checked here, fast;
tests/serving/test_batching.py checks the same against a real `fmnist serve`. Requests are
made as the data plane makes them: queued from an event loop (here one on a thread of its
own), each caller (here a thread) waiting for its answer.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from fmnist.errors import UserError
from fmnist.serving.server.core.config import BatchingConfig, read_batching_parameters_file
from fmnist.serving.server.servables.batch_scheduler import check_config
from fmnist.serving.server.servables.batching import with_batching
from fmnist.serving.wire.status import Code, StatusError

WAIT_S = 10.0  # bound on every wait for a condition


class FakeModel:
    """`y = 2 * x + 1` per row; records each call's batch; the first call can be held."""

    signatures: ClassVar[dict] = {}  # no signature declared: every request shape may batch

    def __init__(self, hold_first: bool = False, error: StatusError | None = None):
        self.calls: list[np.ndarray] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.hold_first = hold_first
        self.error = error
        self.closed = False

    def predict(self, signature_name, inputs, output_filter=(), *, deadline=None):
        x = inputs["x"]
        self.calls.append(x.copy())
        if len(self.calls) == 1 and self.hold_first:
            self.started.set()
            assert self.release.wait(WAIT_S)
        if self.error is not None:
            raise self.error
        return signature_name or "serving_default", {"y": 2 * x + 1}

    def close(self) -> None:
        self.closed = True


LOOP = asyncio.new_event_loop()
threading.Thread(target=LOOP.run_forever, name="test-loop", daemon=True).start()


def predict(served, signature_name, inputs, output_filter=(), *, deadline=None):
    """A Predict as the data plane makes it: queued from the event loop, or run alone."""

    async def call():
        batched = served.batched(signature_name, inputs, output_filter, deadline)
        if batched is None:
            return served.predict(signature_name, inputs, output_filter, deadline=deadline)
        return await batched

    return asyncio.run_coroutine_threadsafe(call(), LOOP).result()


def batching(model: FakeModel, **params):
    """The fake model behind `with_batching`, one batch thread unless asked otherwise."""
    params.setdefault("num_batch_threads", 1)
    return with_batching(lambda _path: model, BatchingConfig(**params))(Path("1"))


def rows(*values: float) -> np.ndarray:
    return np.array([[v, -v] for v in values], dtype=np.float32)


def wait_until(condition) -> None:
    end = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.001)


def hold_then_queue(served, model: FakeModel, requests: list[np.ndarray], pool, **kwargs):
    """Occupy the only batch thread, queue `requests` behind it, then let everything run;
    returns the futures of the queued requests."""
    first = pool.submit(predict, served, "", {"x": rows(100)})
    assert model.started.wait(WAIT_S)
    total = sum(len(r) for r in requests)
    futures = [pool.submit(predict, served, "", {"x": r}, **kwargs) for r in requests]
    wait_until(lambda: served.scheduler.queued_rows() == total)
    model.release.set()
    first.result(WAIT_S)
    return futures


def test_queued_requests_share_one_model_call():
    model = FakeModel(hold_first=True)
    served = batching(model, max_batch_size=8)
    with ThreadPoolExecutor(6) as pool:
        futures = hold_then_queue(served, model, [rows(i) for i in range(5)], pool)
        for f in futures:
            f.result(WAIT_S)
    assert [len(c) for c in model.calls] == [1, 5]


def test_each_caller_gets_its_own_rows():
    model = FakeModel(hold_first=True)
    served = batching(model, max_batch_size=8)
    requests = [rows(1), rows(2, 3), rows(4, 5, 6)]
    with ThreadPoolExecutor(4) as pool:
        futures = hold_then_queue(served, model, requests, pool)
        answers = [f.result(WAIT_S)[1]["y"] for f in futures]
    for request, answer in zip(requests, answers, strict=True):
        np.testing.assert_array_equal(answer, 2 * request + 1)


def test_batch_is_padded_to_the_next_allowed_size_and_padding_dropped():
    model = FakeModel(hold_first=True)
    served = batching(model, max_batch_size=8, allowed_batch_sizes=(4, 8))
    requests = [rows(1), rows(2, 3)]
    with ThreadPoolExecutor(3) as pool:
        futures = hold_then_queue(served, model, requests, pool)
        answers = [f.result(WAIT_S)[1]["y"] for f in futures]
    assert len(model.calls[1]) == 4  # 3 rows padded to 4 with the last request's first row
    np.testing.assert_array_equal(model.calls[1][3], rows(2)[0])
    assert [len(a) for a in answers] == [1, 2]


def test_full_queue_is_unavailable():
    model = FakeModel(hold_first=True)
    served = batching(model, max_batch_size=1, max_enqueued_batches=1)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(predict, served, "", {"x": rows(0)})
        assert model.started.wait(WAIT_S)
        queued = pool.submit(predict, served, "", {"x": rows(1)})
        wait_until(lambda: served.scheduler.queued_rows() == 1)
        with pytest.raises(StatusError) as refused:
            predict(served, "", {"x": rows(2)})
        model.release.set()
        first.result(WAIT_S), queued.result(WAIT_S)
    assert refused.value.code == Code.UNAVAILABLE
    assert refused.value.message.startswith(
        "The batch scheduling queue to which this task was submitted is full"
    )


def test_request_larger_than_max_batch_size_is_invalid_argument():
    served = batching(FakeModel(), max_batch_size=4)
    with pytest.raises(StatusError) as refused:
        predict(served, "", {"x": rows(*range(5))})
    assert refused.value.code == Code.INVALID_ARGUMENT
    assert refused.value.message == "Task size 5 is larger than maximum input batch size 4"


def test_large_batch_splitting_runs_pieces_and_joins_the_answer():
    model = FakeModel()
    served = batching(
        model, max_batch_size=8, enable_large_batch_splitting=True, max_execution_batch_size=3
    )
    x = rows(*range(7))
    _, outputs = predict(served, "", {"x": x})
    assert [len(c) for c in model.calls] == [3, 3, 1]
    np.testing.assert_array_equal(outputs["y"], 2 * x + 1)


def test_deadline_passing_while_queued_is_deadline_exceeded_and_never_runs():
    model = FakeModel(hold_first=True)
    served = batching(model, max_batch_size=8)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(predict, served, "", {"x": rows(0)})
        assert model.started.wait(WAIT_S)
        with pytest.raises(StatusError) as late:
            predict(served, "", {"x": rows(7)}, deadline=time.monotonic() + 0.05)
        model.release.set()
        first.result(WAIT_S)
    assert late.value.code == Code.DEADLINE_EXCEEDED
    assert served.scheduler.queued_rows() == 0
    assert all(7 not in call for call in model.calls)


def test_error_of_a_shared_call_goes_to_every_caller():
    model = FakeModel(hold_first=True, error=StatusError(Code.INTERNAL, "boom"))
    served = batching(model, max_batch_size=8)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(predict, served, "", {"x": rows(100)})
        assert model.started.wait(WAIT_S)
        futures = [pool.submit(predict, served, "", {"x": rows(i)}) for i in range(3)]
        wait_until(lambda: served.scheduler.queued_rows() == 3)
        model.release.set()
        errors = [f.exception(WAIT_S) for f in [first, *futures]]
    assert [(e.code, e.message) for e in errors] == [(Code.INTERNAL, "boom")] * 4
    assert len(model.calls) == 2


def test_requests_with_different_inner_shapes_are_not_merged():
    model = FakeModel(hold_first=True)
    served = batching(model, max_batch_size=8)
    with ThreadPoolExecutor(3) as pool:
        futures = hold_then_queue(served, model, [rows(1), np.zeros((1, 3), np.float32)], pool)
        shapes = sorted(f.result(WAIT_S)[1]["y"].shape for f in futures)
    assert shapes == [(1, 2), (1, 3)]
    assert sorted(c.shape for c in model.calls[1:]) == [(1, 2), (1, 3)]


def test_request_without_a_batch_dimension_runs_alone():
    model = FakeModel()
    served = batching(model, max_batch_size=8)
    _, outputs = predict(served, "", {"x": np.float32(3)})
    assert outputs["y"] == 7 and len(model.calls) == 1


def test_full_batch_runs_without_waiting_for_the_timeout():
    model = FakeModel()
    served = batching(model, max_batch_size=3, batch_timeout_micros=60_000_000)
    with ThreadPoolExecutor(3) as pool:
        answers = [
            f.result(WAIT_S)
            for f in [pool.submit(predict, served, "", {"x": rows(i)}) for i in range(3)]
        ]
    assert len(answers) == 3 and [len(c) for c in model.calls] == [3]


def test_close_closes_the_wrapped_model():
    model = FakeModel()
    served = batching(model)
    predict(served, "", {"x": rows(1)})
    served.close()
    assert model.closed


def test_last_allowed_batch_size_must_match_max_batch_size():
    with pytest.raises(
        ValueError,
        match="Last entry in allowed_batch_sizes must match "
        "max_batch_size; last entry was 4; expected 8",
    ):
        check_config(BatchingConfig(max_batch_size=8, allowed_batch_sizes=(2, 4)))


def test_parameters_file_sets_fields_and_keeps_tf_serving_defaults(tmp_path):
    path = tmp_path / "batching.config"
    path.write_text(
        "max_batch_size { value: 64 }\nallowed_batch_sizes: 32\nallowed_batch_sizes: 64\n"
    )
    config = read_batching_parameters_file(str(path))
    assert (config.max_batch_size, config.allowed_batch_sizes) == (64, (32, 64))
    assert (config.batch_timeout_micros, config.max_enqueued_batches) == (0, 10)


def test_parameters_file_that_does_not_parse_is_a_one_line_user_error(tmp_path):
    path = tmp_path / "batching.config"
    path.write_text("max_batch_size: 64\n")
    with pytest.raises(UserError) as error:
        read_batching_parameters_file(str(path))
    assert str(error.value).startswith(
        "Error parsing text-format tensorflow.serving.BatchingParameters: 1:"
    )
    assert "\n" not in str(error.value)


def test_docker_batching_config_parses():
    path = Path(__file__).parents[2] / "docker" / "serving" / "config" / "batching.config"
    config = read_batching_parameters_file(str(path))
    assert config.max_batch_size == config.allowed_batch_sizes[-1]


def test_lone_request_runs_when_the_batch_timeout_passes():
    model = FakeModel()
    served = batching(model, max_batch_size=8, batch_timeout_micros=20_000)
    _, outputs = predict(served, "", {"x": rows(4)})
    np.testing.assert_array_equal(outputs["y"], 2 * rows(4) + 1)
    assert [len(c) for c in model.calls] == [1]


def test_unloading_runs_queued_requests_without_waiting_for_the_timeout():
    model = FakeModel()
    served = batching(model, max_batch_size=8, batch_timeout_micros=600_000_000)
    with ThreadPoolExecutor(1) as pool:
        queued = pool.submit(predict, served, "", {"x": rows(5)})
        wait_until(lambda: served.scheduler.queued_rows() == 1)
        served.close()
        _, outputs = queued.result(WAIT_S)
    np.testing.assert_array_equal(outputs["y"], 2 * rows(5) + 1)
    assert model.closed
