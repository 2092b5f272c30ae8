"""Hostile input against a real `fmnist serve`: hypothesis-generated REST bodies and gRPC
TensorProtos; after every case the process is alive and the answer is a request error.

Bounded by FMNIST_FUZZ_EXAMPLES (total generated cases, default 200; CI sets >= 2000),
derandomized so a CI run is reproducible. The count run (and 5xx / crash counts) is
written as JSON to the file FMNIST_FUZZ_REPORT names, if set, and printed at teardown;
FMNIST_FUZZ_LOG names a file every case is appended to before it is sent.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

pytestmark = pytest.mark.integration

TOTAL = int(os.environ.get("FMNIST_FUZZ_EXAMPLES", "200"))
MAX_REQUEST_BYTES = 4 << 20
FUZZ = settings(
    max_examples=max(TOTAL // 2, 1),
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=list(HealthCheck),
)
# For malformed input the server must answer a request error, never one of these.
SERVER_FAULTS = {
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNAVAILABLE,
}
COUNTS: Counter[str] = Counter()


@pytest.fixture(scope="module")
def server(fmnist_models, serving_fixtures, session_model_server, tmp_path_factory):
    """One `fmnist serve` with our signature (fmnist) and TF Serving's half_plus_two."""
    root = tmp_path_factory.mktemp("fuzz")
    (root / "fmnist").mkdir()
    (root / "fmnist" / "1").symlink_to(fmnist_models[3], target_is_directory=True)
    half_plus_two = serving_fixtures / "saved_model_half_plus_two_cpu"
    config = root / "models.config"
    config.write_text(
        "model_config_list {\n"
        f'  config {{ name: "fmnist" base_path: "{root / "fmnist"}" '
        'model_platform: "tensorflow" }\n'
        f'  config {{ name: "half_plus_two" base_path: "{half_plus_two}" '
        'model_platform: "tensorflow" }\n}\n'
    )
    server = session_model_server(
        *("--model_config_file", str(config)),
        *("--max_request_bytes", str(MAX_REQUEST_BYTES)),
    )
    yield server
    report = {"cases": sum(COUNTS[k] for k in ("rest", "grpc", "explicit")), **COUNTS}
    report.setdefault("crashes", 0)
    report.setdefault("http_5xx", 0)
    print(f"\nfuzz: {json.dumps(report, sort_keys=True)}")
    if os.environ.get("FMNIST_FUZZ_REPORT"):
        Path(os.environ["FMNIST_FUZZ_REPORT"]).write_text(json.dumps(report, sort_keys=True))


@pytest.fixture(scope="module")
def http():
    with requests.Session() as session:
        yield session


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.grpc_target) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def assert_alive(server) -> None:
    if server.process.poll() is not None:
        COUNTS["crashes"] += 1
        pytest.fail(f"the server died (exit {server.process.returncode}):\n{server.log()[-3000:]}")


def log_case(case: object) -> None:
    """Append the case to FMNIST_FUZZ_LOG (if set) before it is sent: the last line names the
    case that killed a server."""
    if os.environ.get("FMNIST_FUZZ_LOG"):
        with open(os.environ["FMNIST_FUZZ_LOG"], "a") as log:
            log.write(repr(case).replace("\n", " ") + "\n")


# --- REST ---------------------------------------------------------------------------------

SCALARS = (
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.integers(0, 255)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | st.none()
    | st.text(max_size=6)
    | st.fixed_dictionaries({"b64": st.sampled_from(["", "AAEC", "!!", "YQ==", "YQ"])})
)
# Nested lists: regular (every rank 0..6, zero-size dims included) or ragged, of any scalars.
REGULAR = st.builds(
    lambda dims, value: np.full(dims, value).tolist() if dims else value,
    st.lists(st.sampled_from([0, 1, 2, 3, 28]), max_size=6).filter(
        lambda dims: int(np.prod(dims)) <= 4096
    ),
    st.integers(0, 255) | st.floats(allow_nan=True, allow_infinity=True) | st.booleans(),
)
RAGGED = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["images", "x", "blobs", "b64", "y"]), children, max_size=3
        )
    ),
    max_leaves=24,
)
VALUES = REGULAR | RAGGED
ROWS = st.lists(
    st.dictionaries(st.sampled_from(["images", "x", "blobs", "sleep"]), VALUES, max_size=2),
    max_size=3,
)
COLUMNS = st.dictionaries(st.sampled_from(["images", "x", "blobs", "extra"]), VALUES, max_size=3)
BODIES = st.fixed_dictionaries(
    {},
    optional={
        "signature_name": st.sampled_from(["serving_default", "echo", "", "classify_x_to_y"])
        | SCALARS,
        "instances": VALUES | ROWS,
        "inputs": VALUES | COLUMNS,
    },
)
PATHS = st.sampled_from(
    [
        "/v1/models/fmnist:predict",
        "/v1/models/fmnist/versions/1:predict",
        "/v1/models/half_plus_two:predict",
        "/v1/models/fmnist:classify",
        "/v1/models/half_plus_two:regress",
    ]
)

# The right model and layout with fuzzed shapes and values, so cases reach the model.
IMAGE_STACKS = st.builds(
    lambda n, h, w, value: np.full((n, h, w), value).tolist(),
    st.integers(0, 3),
    st.sampled_from([28, 28, 28, 27, 1]),
    st.sampled_from([28, 28, 28, 0, 784]),
    st.integers(-1, 256) | st.floats(allow_nan=True, allow_infinity=True),
)
KEY = st.sampled_from(["instances", "inputs"])
PLAUSIBLE = st.one_of(
    st.tuples(
        st.just("/v1/models/fmnist:predict"), st.builds(lambda k, v: {k: v}, KEY, IMAGE_STACKS)
    ),
    st.tuples(
        st.just("/v1/models/half_plus_two:predict"), st.builds(lambda k, v: {k: v}, KEY, REGULAR)
    ),
    st.tuples(
        st.just("/v1/models/fmnist:predict"),
        st.builds(
            lambda k, v: {"signature_name": "echo", k: v},
            KEY,
            st.lists(st.text(max_size=4) | SCALARS, max_size=4) | SCALARS,
        ),
    ),
)
CASES = st.tuples(PATHS, BODIES) | PLAUSIBLE


def check_rest_answer(response: requests.Response) -> None:
    """No 5xx but 503, and a JSON body; an error body is `{"error": "<message>"}`."""
    if response.status_code >= 500:
        COUNTS["http_5xx"] += 1
    assert response.status_code < 500 or response.status_code == 503, response.text[:500]
    payload = json.loads(response.text)  # NaN/Infinity tokens included
    if response.status_code != 200:
        assert set(payload) == {"error"} and isinstance(payload["error"], str), payload
        assert payload["error"]


@FUZZ
@given(case=CASES)
def test_fuzzed_rest_bodies_get_json_answers_and_never_crash_the_server(server, http, case):
    COUNTS["rest"] += 1
    path, body = case
    data = json.dumps(body, allow_nan=True)  # NaN and Infinity as bare literals
    log_case(f"POST {path} {data[:2000]}")
    response = http.post(server.rest_url + path, data=data, timeout=60)
    COUNTS[f"rest_{response.status_code}"] += 1
    assert_alive(server)
    check_rest_answer(response)


# --- gRPC ---------------------------------------------------------------------------------

DTYPES = st.sampled_from(sorted(types_pb2.DataType.values())) | st.integers(-3, 300)
DIM = st.sampled_from([0, 1, 2, 3, 28]) | st.integers(0, 2**63 - 1)
TYPED_FIELDS = {
    "float_val": st.floats(width=32, allow_nan=True),
    "double_val": st.floats(allow_nan=True),
    "int_val": st.integers(-(2**31), 2**31 - 1),
    "int64_val": st.integers(-(2**63), 2**63 - 1),
    "uint32_val": st.integers(0, 2**32 - 1),
    "uint64_val": st.integers(0, 2**64 - 1),
    "bool_val": st.booleans(),
    "half_val": st.integers(0, 2**16 - 1),
    "string_val": st.binary(max_size=8),
}


@st.composite
def tensor_protos(draw, dtype: int | None = None, dims=DIM) -> tensor_pb2.TensorProto:
    """Every rank 0..6 (a few beyond), zero and huge dims, any dtype number, and content that
    fits the shape, is too short or too long, in `tensor_content` or any typed field."""
    tensor = tensor_pb2.TensorProto(dtype=draw(DTYPES) if dtype is None else dtype)
    if dtype is None and draw(st.integers(0, 30)) == 0:
        tensor.tensor_shape.unknown_rank = True
    rank = draw(st.integers(0, 6) | st.sampled_from([7, 32, 33, 40, 65, 300]))
    dims = [draw(dims) for _ in range(min(rank, 8))] + [1] * max(rank - 8, 0)
    for size in dims:
        tensor.tensor_shape.dim.add(size=size)
    elements = int(np.prod([min(d, 2**20) for d in dims], dtype=np.float64))
    content = draw(st.sampled_from(["none", "exact-bytes", "bytes", "typed", "exact-typed"]))
    if content in ("exact-bytes", "exact-typed") and elements > 4096:
        content = "typed"
    if content == "exact-bytes":
        itemsize = draw(st.sampled_from([1, 2, 4, 8]))
        tensor.tensor_content = bytes(draw(st.binary(min_size=1, max_size=1))) * (
            elements * itemsize
        )
    elif content == "bytes":
        tensor.tensor_content = draw(st.binary(max_size=64))
    elif content in ("typed", "exact-typed"):
        field = draw(st.sampled_from(sorted(TYPED_FIELDS)))
        count = elements if content == "exact-typed" else draw(st.integers(0, 8))
        value = draw(TYPED_FIELDS[field])
        getattr(tensor, field).extend([value] * count)
    return tensor


ANY_REQUEST = st.builds(
    lambda target, alias, tensor, extra: (target, alias, tensor, extra),
    st.sampled_from(
        [
            ("fmnist", ""),
            ("fmnist", "echo"),
            ("half_plus_two", ""),
            ("half_plus_two", "classify_x_to_y"),
            ("half_plus_two", "regress_x2_to_y3"),
        ]
    ),
    st.sampled_from(["images", "x", "blobs", "inputs", "nope"]),
    tensor_protos(),
    st.none() | tensor_protos(),
)
# The right model, input and dtype with a fuzzed shape and content, so cases reach the model.
SMALL_DIM = st.sampled_from([0, 1, 2, 3, 28])
PLAUSIBLE_REQUEST = st.one_of(
    st.builds(
        lambda t: (("fmnist", ""), "images", t, None),
        tensor_protos(dtype=types_pb2.DT_UINT8, dims=SMALL_DIM),
    ),
    st.builds(
        lambda t: (("fmnist", "echo"), "blobs", t, None),
        tensor_protos(dtype=types_pb2.DT_STRING, dims=SMALL_DIM),
    ),
    st.builds(
        lambda t: (("half_plus_two", ""), "x", t, None),
        tensor_protos(dtype=types_pb2.DT_FLOAT, dims=SMALL_DIM),
    ),
)
REQUESTS = ANY_REQUEST | PLAUSIBLE_REQUEST


@FUZZ
@given(case=REQUESTS)
def test_fuzzed_grpc_tensors_get_request_errors_and_never_crash_the_server(server, stub, case):
    COUNTS["grpc"] += 1
    (model, signature), alias, tensor, extra = case
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    request.inputs[alias].CopyFrom(tensor)
    if extra is not None:
        request.inputs["sleep_ms" if alias != "sleep_ms" else "x"].CopyFrom(extra)
    log_case(request)
    try:
        stub.Predict(request, timeout=60)
        COUNTS["grpc_OK"] += 1
    except grpc.RpcError as err:
        COUNTS[f"grpc_{err.code().name}"] += 1
        assert_alive(server)
        assert err.code() not in SERVER_FAULTS, f"{err.code()}: {err.details()}"
    assert_alive(server)


# --- explicit huge cases, outside hypothesis's budget ---------------------------------------


def _huge(dims: list[int], **fields) -> tensor_pb2.TensorProto:
    tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_UINT8, **fields)
    for size in dims:
        tensor.tensor_shape.dim.add(size=size)
    return tensor


@pytest.mark.parametrize(
    "tensor",
    [
        _huge([10**9, 28, 28]),
        _huge([10**9, 28, 28], int_val=[7]),
        _huge([10**9, 28, 28], tensor_content=b"\0" * 784),
        _huge([2**62, 2**62]),
        _huge([0, 2**62, 2**62]),
        _huge([0, 28, 28]),
        _huge([MAX_REQUEST_BYTES // 784 + 1, 28, 28], int_val=[1]),
        _huge([1] * 254, tensor_content=b"\0"),
    ],
    ids=[
        "1e9",
        "1e9-splat",
        "1e9-one-image",
        "2^124",
        "0-next-to-2^124",
        "zero-batch",
        "limit+1",
        "rank-254",
    ],
)
def test_explicit_huge_shapes_are_request_errors(server, stub, tensor):
    COUNTS["explicit"] += 1
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "fmnist"
    request.inputs["images"].CopyFrom(tensor)
    try:
        stub.Predict(request, timeout=60)
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, f"{err.code()}: {err.details()}"
    assert_alive(server)


@pytest.mark.parametrize(
    "body", [{"instances": [0] * 200_000}, {"inputs": [[[0] * 28] * 28] * 300}]
)
def test_explicit_large_rest_bodies_are_answered(server, http, body):
    COUNTS["explicit"] += 1
    response = http.post(f"{server.rest_url}/v1/models/fmnist:predict", json=body, timeout=120)
    assert_alive(server)
    check_rest_answer(response)
