"""The data plane under both APIs, driven with a fake servable: no TensorFlow, no processes.

Each of TF Serving's error cases is one table row, asked over gRPC (the API's method called
with a serialized request message) and over REST (`RestApi.handle`), which must agree on the
canonical code, the HTTP status TF Serving maps it to, and the message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from fmnist.serving.server.api.grpc_api import GrpcApi
from fmnist.serving.server.api.rest_api import RestApi
from fmnist.serving.server.core.config import ModelConfig, VersionPolicy
from fmnist.serving.server.core.data_plane import DataPlane
from fmnist.serving.server.core.metrics import Metrics
from fmnist.serving.server.core.registry import ServableRegistry
from fmnist.serving.server.servables import validation
from fmnist.serving.server.servables.base import SignatureServable
from fmnist.serving.wire import dtypes
from fmnist.serving.wire import messages as pb
from fmnist.serving.wire.signature import (
    CLASSIFY_METHOD,
    DEFAULT_SIGNATURE,
    PREDICT_METHOD,
    Signature,
    TensorInfo,
)
from fmnist.serving.wire.status import Code, StatusError, failed_precondition
from fmnist.serving.wire.tensor_proto import to_tensor_proto

WAIT_S = 10.0  # bound on every wait for a condition
SIGNATURES = {
    DEFAULT_SIGNATURE: Signature(
        PREDICT_METHOD,
        inputs={"x": TensorInfo("x:0", dtypes.DT_FLOAT, (-1, 2))},
        outputs={"y": TensorInfo("y:0", dtypes.DT_FLOAT, (-1, 2))},
    ),
    "classify": Signature(
        CLASSIFY_METHOD,
        inputs={"inputs": TensorInfo("examples:0", dtypes.DT_STRING, (-1,))},
        outputs={"scores": TensorInfo("scores:0", dtypes.DT_FLOAT, (-1, 2))},
    ),
}


class FakeServable(SignatureServable):
    """y = 2x + 1 through the real input checks; each example scores [0.25, 0.75]."""

    signatures = SIGNATURES
    unavailable = False  # set by a test: every run fails UNAVAILABLE (a full batch queue)

    def __init__(self, version_dir: Path) -> None:
        self.version = int(version_dir.name)
        self.closed = False

    def predict(self, signature_name, inputs, output_filter=(), *, deadline=None):
        name = signature_name or DEFAULT_SIGNATURE
        if name not in self.signatures:
            raise failed_precondition(f'Serving signature key "{name}" not found.')
        signature = self.signatures[name]
        validation.check_input_names(inputs, signature.inputs)
        for alias, info in signature.inputs.items():
            validation.check_dtype(alias, dtypes.dtype_of(inputs[alias]), info.dtype)
            validation.check_shape(
                name, validation.TensorSpec(alias, info.shape), inputs[alias].shape
            )
        (y,) = self.run_tensors({"x:0": inputs["x"]}, ["y:0"], None, deadline)
        return name, {"y": y}

    def run_tensors(
        self,
        feeds: Mapping[str, np.ndarray],
        fetches: Sequence[str],
        rows: int | None,
        deadline: float | None,
    ) -> list[np.ndarray]:
        if FakeServable.unavailable:
            raise StatusError(Code.UNAVAILABLE, "The batch scheduling queue is full")
        if "x:0" in feeds:
            return [2 * feeds["x:0"] + 1]
        examples = feeds["examples:0"]
        return [np.tile(np.float32([0.25, 0.75]), (len(examples), 1))]

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def apis(tmp_path: Path):
    """(gRPC API, REST API, metrics) over model `m` with versions 1 and 2, label stable=1."""
    for version in (1, 2):
        (tmp_path / "m" / str(version)).mkdir(parents=True)
    config = ModelConfig("m", tmp_path / "m", VersionPolicy(kind="all"), labels={"stable": 1})
    registry = ServableRegistry((config,), loader=FakeServable)
    registry.poll_all()
    metrics = Metrics()
    plane = DataPlane(registry, metrics)
    FakeServable.unavailable = False
    yield GrpcApi(plane), RestApi(plane), metrics
    FakeServable.unavailable = False
    registry.stop()


def predict_request(model="m", *, version=None, label=None, signature="", x=None):
    request = pb.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    value = np.float32([[1, 2]]) if x is None else x
    request.inputs["x"].CopyFrom(to_tensor_proto(value))
    return request


def grpc_call(api: GrpcApi, service: str, method: str, request):
    """A gRPC method called as the transport calls it: with the request's bytes."""
    call = api.services()[service][method].call
    return asyncio.run(call(request.SerializeToString(), None))


def grpc_predict(api: GrpcApi, **spec):
    return grpc_call(api, pb.PREDICTION_SERVICE, "Predict", predict_request(**spec))


def rest(api: RestApi, method: str, path: str, body: object = None) -> tuple[int, dict]:
    raw = b"" if body is None else json.dumps(body).encode()
    status, answer = asyncio.run(api.handle(method, path, raw))
    return status, json.loads(answer)


# (id, gRPC request spec, REST path, REST body, canonical code, HTTP status, message)
ERRORS = [
    (
        "model not found",
        {"model": "nope"},
        "/v1/models/nope:predict",
        {"instances": [[1, 2]]},
        Code.NOT_FOUND,
        404,
        "Servable not found for request: Latest(nope)",
    ),
    (
        "version not found",
        {"version": 7},
        "/v1/models/m/versions/7:predict",
        {"instances": [[1, 2]]},
        Code.NOT_FOUND,
        404,
        "Servable not found for request: Specific(m, 7)",
    ),
    (
        "unknown label",
        {"label": "canary"},
        "/v1/models/m/labels/canary:predict",
        {"instances": [[1, 2]]},
        Code.INVALID_ARGUMENT,
        400,
        "Unrecognized servable version label: canary",
    ),
    (
        "bad input",
        {"x": np.float32([[1, 2, 3]])},
        "/v1/models/m:predict",
        {"instances": [[1, 2, 3]]},
        Code.INVALID_ARGUMENT,
        400,
        "signature serving_default input 'x' shape is wrong, expected: [?,2], actual: [1,3]",
    ),
]


@pytest.mark.parametrize(
    ("spec", "path", "body", "code", "http", "message"),
    [row[1:] for row in ERRORS],
    ids=[row[0] for row in ERRORS],
)
def test_error_cases_agree_over_grpc_and_rest(apis, spec, path, body, code, http, message):
    grpc_api, rest_api, _ = apis
    with pytest.raises(StatusError) as raised:
        grpc_predict(grpc_api, **spec)
    assert (raised.value.code, raised.value.message) == (code, message)
    assert rest(rest_api, "POST", path, body) == (http, {"error": message})


def test_unavailable_servable_is_unavailable_and_503(apis) -> None:
    grpc_api, rest_api, _ = apis
    FakeServable.unavailable = True
    with pytest.raises(StatusError) as raised:
        grpc_predict(grpc_api)
    assert raised.value.code == Code.UNAVAILABLE
    assert rest(rest_api, "POST", "/v1/models/m:predict", {"instances": [[1, 2]]}) == (
        503,
        {"error": "The batch scheduling queue is full"},
    )


def test_bad_signature_is_each_apis_own_wording(apis) -> None:
    """TF Serving words a missing signature differently per API (and with other codes)."""
    grpc_api, rest_api, _ = apis
    with pytest.raises(StatusError) as raised:
        grpc_predict(grpc_api, signature="nope")
    assert (raised.value.code, raised.value.message) == (
        Code.FAILED_PRECONDITION,
        'Serving signature key "nope" not found.',
    )
    body = {"signature_name": "nope", "instances": [[1, 2]]}
    assert rest(rest_api, "POST", "/v1/models/m:predict", body) == (
        400,
        {"error": 'Serving signature name: "nope" not found in signature def'},
    )


def test_classify_with_an_unknown_signature_agrees(apis) -> None:
    grpc_api, rest_api, _ = apis
    request = pb.ClassificationRequest()
    request.model_spec.name, request.model_spec.signature_name = "m", "nope"
    request.input.example_list.examples.add()
    with pytest.raises(StatusError) as raised:
        grpc_call(grpc_api, pb.PREDICTION_SERVICE, "Classify", request)
    message = "No signature was found with the name: nope"
    assert (raised.value.code, raised.value.message) == (Code.INVALID_ARGUMENT, message)
    body = {"signature_name": "nope", "examples": [{"a": 1}]}
    assert rest(rest_api, "POST", "/v1/models/m:classify", body) == (400, {"error": message})


def test_predict_answers_alike_over_both_apis(apis) -> None:
    grpc_api, rest_api, _ = apis
    response = grpc_predict(grpc_api, label="stable")
    assert (response.model_spec.version.value, response.model_spec.signature_name) == (
        1,
        DEFAULT_SIGNATURE,
    )
    assert list(response.outputs["y"].float_val) == [3.0, 5.0]
    path = "/v1/models/m/labels/stable:predict"
    assert rest(rest_api, "POST", path, {"instances": [[1, 2]]}) == (
        200,
        {"predictions": [[3.0, 5.0]]},
    )


def test_classify_answers_alike_over_both_apis(apis) -> None:
    grpc_api, rest_api, _ = apis
    request = pb.ClassificationRequest()
    request.model_spec.name, request.model_spec.signature_name = "m", "classify"
    request.input.example_list.examples.add()
    response = grpc_call(grpc_api, pb.PREDICTION_SERVICE, "Classify", request)
    assert [c.score for c in response.result.classifications[0].classes] == [0.25, 0.75]
    body = {"signature_name": "classify", "examples": [{"a": 1}]}
    assert rest(rest_api, "POST", "/v1/models/m:classify", body) == (
        200,
        {"results": [[["", 0.25], ["", 0.75]]]},
    )


def test_status_and_metadata_answer_alike(apis) -> None:
    grpc_api, rest_api, _ = apis
    request = pb.GetModelStatusRequest()
    request.model_spec.name = "m"
    status = grpc_call(grpc_api, pb.MODEL_SERVICE, "GetModelStatus", request)
    assert [(s.version, s.state) for s in status.model_version_status] == [(2, 30), (1, 30)]
    code, answer = rest(rest_api, "GET", "/v1/models/m")
    assert code == 200 and [s["version"] for s in answer["model_version_status"]] == ["2", "1"]
    code, answer = rest(rest_api, "GET", "/v1/models/m/metadata")
    assert code == 200
    assert sorted(answer["metadata"]["signature_def"]["signature_def"]) == sorted(SIGNATURES)


def test_every_request_is_counted_once_with_its_code(apis) -> None:
    grpc_api, rest_api, metrics = apis
    grpc_predict(grpc_api)
    with pytest.raises(StatusError):
        grpc_predict(grpc_api, model="nope")
    rest(rest_api, "POST", "/v1/models/m:predict", {"instances": [[1, 2]]})
    rest(rest_api, "POST", "/v1/models/m:predict", "not an object")
    rest(rest_api, "GET", "/v2/anything")
    counted = {
        tuple(sample.labels[k] for k in ("api", "method", "code")): sample.value
        for metric in metrics.requests.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    }
    assert counted == {
        ("grpc", "predict", "OK"): 1,
        ("grpc", "predict", "NOT_FOUND"): 1,
        ("rest", "predict", "OK"): 1,
        ("rest", "predict", "INVALID_ARGUMENT"): 1,
        ("rest", "unknown", "INVALID_ARGUMENT"): 1,
    }


# --- where work runs, what is logged, and where versions close -------------------------------


class BrokenServable(FakeServable):
    """Every Predict fails with a bug, as a runtime might."""

    def predict(self, signature_name, inputs, output_filter=(), *, deadline=None):
        raise RuntimeError("the runtime's own words")


def plane_of(tmp_path: Path, loader, pools=None) -> DataPlane:
    (tmp_path / "m" / "1").mkdir(parents=True)
    registry = ServableRegistry((ModelConfig("m", tmp_path / "m"),), loader=loader)
    registry.poll_all()
    return DataPlane(registry, Metrics(), pools=pools)


def test_a_servable_that_raises_is_internal_and_its_traceback_is_logged(tmp_path, caplog):
    grpc_api = GrpcApi(plane_of(tmp_path, BrokenServable))
    with (
        caplog.at_level(logging.ERROR, logger="fmnist.serving.server"),
        pytest.raises(StatusError) as raised,
    ):
        grpc_predict(grpc_api)
    # The client learns it is the server's fault, not the runtime's words.
    assert (raised.value.code, raised.value.message) == (
        Code.INTERNAL,
        "Internal error (logged by the server)",
    )
    (record,) = caplog.records
    assert (record.api, record.method, record.model, record.version) == (
        "grpc",
        "predict",
        "m",
        "1",
    )
    assert "the runtime's own words" in record.getMessage()
    assert record.exc_info and record.exc_info[0] is RuntimeError


class Gate:
    """A servable's predict that waits at the gate; how many waited at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside = self.most = 0
        self.open = threading.Event()

    def __call__(self) -> None:
        with self.lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        self.open.wait(WAIT_S)
        with self.lock:
            self.inside -= 1


def test_rest_model_work_is_bounded_by_the_rest_pool(tmp_path) -> None:
    gate = Gate()

    class Gated(FakeServable):
        def predict(self, signature_name, inputs, output_filter=(), *, deadline=None):
            gate()
            return super().predict(signature_name, inputs, output_filter, deadline=deadline)

    pools = {"rest": ThreadPoolExecutor(2), "grpc": ThreadPoolExecutor(8)}
    rest_api = RestApi(plane_of(tmp_path, Gated, pools))
    body = json.dumps({"instances": [[1, 2]]}).encode()

    async def five_requests():
        calls = [rest_api.handle("POST", "/v1/models/m:predict", body) for _ in range(5)]
        waiting = asyncio.gather(*calls)
        while gate.inside < 2:  # both REST threads taken...
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.05)  # ...and no third one joins them (a pool of more would)
        gate.open.set()
        return await waiting

    answers = asyncio.run(five_requests())
    assert [status for status, _ in answers] == [200] * 5
    assert gate.most == 2


def test_a_version_released_on_the_event_loop_closes_on_the_unload_thread(tmp_path) -> None:
    """A request holds version 1 while version 2 replaces it: the request lets go on the
    event loop, and closing (which can take long) must not happen there."""
    closed_on = []

    class Recorded(FakeServable):
        def predict(self, signature_name, inputs, output_filter=(), *, deadline=None):
            (tmp_path / "m" / "2").mkdir()
            registry.poll_all()  # version 1 retires while this request holds it
            return super().predict(signature_name, inputs, output_filter, deadline=deadline)

        def close(self) -> None:
            closed_on.append(threading.current_thread().name)

    plane = plane_of(tmp_path, Recorded)
    registry = plane.registry

    async def predict_then_name_the_loop_thread() -> str:
        await (
            GrpcApi(plane)
            .services()[pb.PREDICTION_SERVICE]["Predict"]
            .call(predict_request(version=1).SerializeToString(), None)
        )
        return threading.current_thread().name

    loop_thread = asyncio.run(predict_then_name_the_loop_thread())
    deadline = time.monotonic() + WAIT_S
    while not closed_on:
        assert time.monotonic() < deadline, "version 1 was never closed"
        time.sleep(0.001)
    assert closed_on[0].startswith("unload") and closed_on[0] != loop_thread
