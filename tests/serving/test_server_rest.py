"""The REST API against TF Serving's own test models, answers and error mapping."""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


@pytest.fixture(scope="module")
def rest(half_plus_two_server) -> str:
    return half_plus_two_server.rest_url


@pytest.fixture(scope="module")
def http() -> requests.Session:
    with requests.Session() as session:
        yield session


def post(http, url: str, body) -> requests.Response:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return http.post(url, data=data, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize(
    ("path", "body", "answer"),
    [
        (":predict", {"instances": [1.0, 2.0, 5.0]}, {"predictions": [2.5, 3.0, 4.5]}),
        ("/versions/123:predict", {"instances": [[1.0], [2.0]]}, {"predictions": [[2.5], [3.0]]}),
        ("/labels/stable:predict", {"instances": [1.0, 2.0]}, {"predictions": [2.5, 3.0]}),
        (
            ":predict",
            {"signature_name": "serving_default", "inputs": [3.0, 4.0]},
            {"outputs": [3.5, 4.0]},
        ),
        (":predict", {"inputs": {"x": [[1.0]]}}, {"outputs": [[2.5]]}),
        (":predict", {"instances": [{"x": 1.0}, {"x": 3.0}]}, {"predictions": [2.5, 3.5]}),
        (":predict", {"instances": [1, 2]}, {"predictions": [2.5, 3.0]}),  # ints feed floats
        (
            ":regress",
            {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]},
            {"results": [42.0]},
        ),
        (
            ":classify",
            {"signature_name": "classify_x_to_y", "examples": [{"x": 20.0}, {"x": 10.0}]},
            {"results": [[["", 12.0]], [["", 7.0]]]},
        ),
        (
            ":regress",  # the context is merged into every example; an example's own value wins
            {
                "signature_name": "regress_x_to_y",
                "context": {"x": 10.0},
                "examples": [{}, {"x": 80.0}],
            },
            {"results": [7.0, 42.0]},
        ),
    ],
)
def test_half_plus_two_answers(http, rest, path, body, answer):
    response = post(http, f"{rest}/v1/models/half_plus_two{path}", body)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == answer


def test_half_plus_three_answers(http, rest):
    body = {"instances": [1.0, 2.0, 5.0]}
    response = post(http, f"{rest}/v1/models/half_plus_three:predict", body)
    assert response.json() == {"predictions": [3.5, 4.0, 5.5]}


def test_nan_and_infinity_pass_through_as_tf_serving_writes_them(http, rest):
    response = post(
        http, f"{rest}/v1/models/half_plus_two:predict", '{"instances": [NaN, -Infinity]}'
    )
    assert response.status_code == 200
    assert re.fullmatch(r'\{"predictions":\[NaN,-Infinity\]\}', response.text.replace(" ", ""))
    values = response.json()["predictions"]
    assert math.isnan(values[0]) and values[1] == -math.inf


def test_binary_strings_travel_as_b64(http, rest):
    """A serialized tf.Example fed as {"b64": ...} to the TF1 classify signature's string input."""
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example()
    example.features.feature["x"].float_list.value.append(20.0)
    blob = base64.b64encode(example.SerializeToString()).decode()
    body = {"signature_name": "classify_x_to_y", "instances": [{"b64": blob}]}
    response = post(http, f"{rest}/v1/models/half_plus_two:predict", body)
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [[12.0]]}


def test_model_status_json(http, rest):
    expected = {
        "model_version_status": [
            {
                "version": "123",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    for path in ("", "/versions/123", "/labels/stable"):
        response = http.get(f"{rest}/v1/models/half_plus_two{path}")
        assert response.status_code == 200
        assert response.json() == expected


def test_metadata_matches_tf_servings_json(http, rest, serving_fixtures: Path):
    response = http.get(f"{rest}/v1/models/half_plus_two/versions/123/metadata")
    assert response.status_code == 200
    metadata = response.json()
    expected = json.loads((serving_fixtures / "half_plus_two_model_metadata.json").read_text())
    expected["model_spec"]["name"] = "half_plus_two"  # the fixture was served as "default"
    assert metadata == expected


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("POST", "/v1/models/half_plus_two:predict", "", 400, "The document is empty"),
        ("POST", "/v1/models/half_plus_two:predict", "instances = [1, 2]", 400, "JSON Parse error"),
        ("POST", "/v1/models/half_plus_two:predict", b"\xff\xfe{", 400, "JSON Parse error"),
        ("POST", "/v1/models/half_plus_two:predict", "[1, 2]", 400, "Is not object"),
        (
            "POST",
            "/v1/models/half_plus_two:predict",
            {"instances": ["x", "y"]},
            400,
            "not of expected type: float",
        ),
        (
            "POST",
            "/v1/models/half_plus_two:predict",
            {"instances": [[1.0], [1.0, 2.0]]},
            400,
            "unexpected size",
        ),
        (
            "POST",
            "/v1/models/half_plus_two:predict",
            {"instances": [[1.0], 2.0]},
            400,
            "incorrect level",
        ),
        (
            "POST",
            "/v1/models/half_plus_two:predict",
            {"instances": []},
            400,
            "No values in 'instances'",
        ),
        (
            "POST",
            "/v1/models/half_plus_two:predict",
            {"instances": [1.0], "inputs": [1.0]},
            400,
            "only one of",
        ),
        (
            "POST",
            "/v1/models/half_plus_two:predict",
            {"instance": [1.0]},
            400,
            "Missing 'inputs' or 'instances'",
        ),
        (
            "POST",
            "/v1/models/half_plus_two:predict",
            {"instances": [{"y": 1.0}]},
            400,
            "does not have named input: y",
        ),
        (
            "POST",
            "/v1/models/half_plus_two:predict",
            {"inputs": {"y": [1.0]}},
            400,
            "Missing named input: x",
        ),
        (
            "POST",
            "/v1/models/half_plus_two:predict",
            {"signature_name": 100, "instances": [1.0]},
            400,
            "'signature_name' key must be a string value.",
        ),
        (
            "POST",
            "/v1/models/half_plus_two:predict",
            {"signature_name": "nope", "instances": [1.0]},
            400,
            '"nope" not found',
        ),
        (
            "POST",
            "/v1/models/half_plus_two:predict",
            {"instances": [{"b64": "!!"}]},
            400,
            "not of expected type",
        ),
        (
            "POST",
            "/v1/models/half_plus_two:classify",
            {"signature_name": "classify_x_to_y", "examples": []},
            400,
            "empty array",
        ),
        (
            "POST",
            "/v1/models/half_plus_two:classify",
            {"signature_name": "classify_x_to_y", "examples": [{"x": None}]},
            400,
            "unexpected JSON type",
        ),
        (
            "POST",
            "/v1/models/half_plus_two:classify",
            {"signature_name": "classify_x_to_y", "examples": [{"x": [1.0, "a"]}]},
            400,
            "Unexpected element type",
        ),
        (
            "POST",
            "/v1/models/half_plus_two:classify",
            {"signature_name": "regress_x_to_y", "examples": [{"x": 1.0}]},
            400,
            "classes",
        ),
        (
            "POST",
            "/v1/models/half_plus_two:classify",
            {"examples": [{"x": 1.0}]},
            400,
            "No classification inputs found",
        ),
        (
            "POST",
            "/v1/models/half_plus_two:regress",
            {"signature_name": "classify_x_to_y", "examples": [{"x": 1.0}]},
            400,
            "No regression outputs",
        ),
        (
            "POST",
            "/v1/models/nope:predict",
            {"instances": [1.0]},
            404,
            "Servable not found for request: Latest(nope)",
        ),
        (
            "POST",
            "/v1/models/half_plus_two/versions/9:predict",
            {"instances": [1.0]},
            404,
            "Specific(half_plus_two, 9)",
        ),
        (
            "POST",
            "/v1/models/half_plus_two/labels/beta:predict",
            {"instances": [1.0]},
            400,
            "Unrecognized servable version label: beta",
        ),
        (
            "POST",
            "/v1/models/half_plus_two/versions/99999999999999999999:predict",
            {"instances": [1.0]},
            400,
            "Failed to convert version",
        ),
        ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
        (
            "GET",
            "/v1/models/half_plus_two/versions/9",
            None,
            404,
            "Could not find version 9 of model half_plus_two",
        ),
        ("GET", "/v1/models/nope/metadata", None, 404, "Servable not found"),
        ("GET", "/v1/models", None, 400, "Missing model name"),
        ("GET", "/v1/foo", None, 400, "Malformed request: GET /v1/foo"),
        ("GET", "/v1/models/half_plus_two:predict", None, 400, "Malformed request"),
        ("POST", "/v1/models/half_plus_two/metadata", {}, 400, "Malformed request"),
        ("POST", "/v1/models/half_plus_two/version/123:predict", {}, 400, "Malformed request"),
        ("PUT", "/v1/models/half_plus_two:predict", {}, 400, "Malformed request: PUT"),
        ("DELETE", "/v1/models/half_plus_two", None, 400, "Malformed request: DELETE"),
        ("GET", "/v2/models/half_plus_two", None, 404, "Not found"),
    ],
)
def test_errors_have_tf_servings_status_and_a_json_message(
    http, rest, method, path, body, status, message
):
    data = body if body is None or isinstance(body, (bytes, str)) else json.dumps(body)
    response = http.request(method, rest + path, data=data)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_a_body_over_the_limit_is_refused_with_413(http, rest):
    big = {"instances": [1.0] * 300_000}  # ~1.5 MB of JSON; the server allows 1 MiB
    response = post(http, f"{rest}/v1/models/half_plus_two:predict", big)
    assert response.status_code == 413
    assert "exceeds" in response.json()["error"]

    def chunks():
        for _ in range(40):
            yield b" " * 32_768  # 1.25 MiB, chunked: no Content-Length to refuse up front

    chunked = http.post(f"{rest}/v1/models/half_plus_two:predict", data=chunks())
    assert chunked.status_code == 413
    assert post(http, f"{rest}/v1/models/half_plus_two:predict", {"instances": [1.0]}).ok


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_prometheus_metrics_count_requests_per_model_version_and_api(http, rest):
    url = f"{rest}/monitoring/prometheus/metrics"
    name = "fmnist_serving_requests_total"
    labels = {"model": "half_plus_three", "version": "123", "api": "rest", "method": "predict"}
    before = _metric(http.get(url).text, name, code="OK", **labels)
    for _ in range(3):
        post(http, f"{rest}/v1/models/half_plus_three:predict", {"instances": [1.0]})
    post(http, f"{rest}/v1/models/half_plus_three:predict", {"instances": ["x"]})
    page = http.get(url)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/plain")
    assert _metric(page.text, name, code="OK", **labels) == before + 3
    assert _metric(page.text, name, code="INVALID_ARGUMENT", **labels) >= 1
    latency = "fmnist_serving_request_latency_seconds_count"
    assert _metric(page.text, latency, **labels) >= 3


def test_prometheus_metrics_count_grpc_requests_too(http, rest, half_plus_two_server):
    import grpc
    import numpy as np

    from fmnist.serving.client import GrpcClient, ServingError

    url = f"{rest}/monitoring/prometheus/metrics"
    name = "fmnist_serving_requests_total"
    labels = {"model": "half_plus_two", "version": "123", "api": "grpc", "method": "predict"}
    before = _metric(http.get(url).text, name, code="OK", **labels)
    latency = "fmnist_serving_request_latency_seconds_count"
    before_latency = _metric(http.get(url).text, latency, **labels)
    with GrpcClient(half_plus_two_server.grpc_target, "half_plus_two") as client:
        for _ in range(4):
            client.predict_raw({"x": np.array([1.0], np.float32)})
        with pytest.raises(ServingError):
            client.predict_raw({"wrong": np.array([1.0], np.float32)})
    page = http.get(url).text
    assert _metric(page, name, code="OK", **labels) == before + 4
    assert _metric(page, name, code=grpc.StatusCode.INVALID_ARGUMENT.name, **labels) >= 1
    assert _metric(page, latency, **labels) == before_latency + 4


# --- fuzzing: any body, any endpoint: a JSON answer with a sane status, and the server lives on


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | st.fixed_dictionaries({"b64": st.text(max_size=8)}),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["x", "y", "b64", "inputs"]), children, max_size=3)
    ),
    max_leaves=20,
)
BODIES = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "signature_name": st.sampled_from(
                [
                    "serving_default",
                    "classify_x_to_y",
                    "regress_x_to_y",
                    "regress_x2_to_y3",
                    "",
                    "x",
                ]
            )
            | JSON_VALUES,
            "instances": JSON_VALUES,
            "inputs": JSON_VALUES,
            "examples": JSON_VALUES,
            "context": JSON_VALUES,
        },
    ).map(lambda d: json.dumps(d).encode()),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=64),
)
PATHS = st.sampled_from(
    [
        "/v1/models/half_plus_two:predict",
        "/v1/models/half_plus_two:classify",
        "/v1/models/half_plus_two:regress",
        "/v1/models/half_plus_two/versions/123:predict",
        "/v1/models/half_plus_two/labels/stable:regress",
        "/v1/models/half_plus_three:predict",
        "/v1/models/%ZZ:predict",
        "/v1/models/half_plus_two/metadata",
        "/v1/models/",
    ]
)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(path=PATHS, body=BODIES, method=st.sampled_from(["POST", "POST", "POST", "GET"]))
def test_fuzzed_requests_get_json_answers_and_never_crash_the_server(
    http, rest, path, body, method
):
    response = http.request(method, rest + path, data=body, timeout=30)
    assert response.status_code in (200, 400, 404), response.text
    payload = json.loads(response.text)  # NaN/Infinity tokens included
    if response.status_code != 200:
        assert isinstance(payload.get("error"), str) and payload["error"]
    alive = post(http, f"{rest}/v1/models/half_plus_two:predict", {"instances": [1.0]})
    assert alive.json() == {"predictions": [2.5]}


@pytest.mark.parametrize(
    "damage",
    [
        lambda body: body.replace(b", 7.0", b" 7.0", 1),  # a comma missing in a long array
        lambda body: body.replace(b"7.0", b"7..0", 1),
        lambda body: body[: len(body) // 2],
    ],
    ids=["missing-comma", "bad-number", "truncated"],
)
def test_damaged_json_is_a_400_json_parse_error(http, rest, damage):
    """Anywhere in the body, also inside a long numeric array the fast path leaves as text."""
    body = json.dumps({"instances": [float(i) for i in range(4000)]}).encode()
    response = http.post(f"{rest}/v1/models/half_plus_two:predict", data=damage(body))
    assert response.status_code == 400
    assert list(response.json()) == ["error"]
    assert response.json()["error"].startswith("JSON Parse error: ")
