"""TF Serving's TF2-style SavedModel (saved_model_half_plus_two_tf2_cpu), served like TF Serving."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
import requests
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

# The name TF Serving's metadata fixture for the TF2 model was recorded under.
NAME = "saved_model_half_plus_two_2_versions"


@pytest.fixture(scope="module")
def server(session_model_server, serving_fixtures: Path):
    path = serving_fixtures / "saved_model_half_plus_two_tf2_cpu"
    return session_model_server("--model_name", NAME, "--model_base_path", str(path))


def _without_defaults(value):
    if isinstance(value, dict):
        return {k: _without_defaults(v) for k, v in value.items() if k != "defaults"}
    return value


def test_metadata_matches_tf_servings_json(server, serving_fixtures: Path):
    metadata = requests.get(f"{server.rest_url}/v1/models/{NAME}/metadata").json()
    expected_file = serving_fixtures / "saved_model_half_plus_two_tf2_2_versions_metadata.json"
    expected = json.loads(expected_file.read_text())
    # The fixture JSON was recorded from an export without SignatureDef.defaults; this one
    # declares x=[0.0] for serving_default. Everything else must be identical.
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    assert signatures["serving_default"]["defaults"]["x"]["float_val"] == [0.0]
    assert _without_defaults(metadata) == _without_defaults(expected)


@pytest.mark.parametrize(
    ("method", "body", "answer"),
    [
        ("predict", {"instances": [1.0, 2.0, 5.0]}, {"predictions": [2.5, 3.0, 4.5]}),
        (
            "classify",  # a predict-method signature: allowed, as with TF Serving's defaults
            {"signature_name": "classify_x_to_y", "examples": [{"x": 20.0}]},
            {"results": [[["", 12.0]]]},
        ),
        (
            "regress",
            {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]},
            {"results": [42.0]},
        ),
    ],
)
def test_rest_answers(server, method, body, answer):
    response = requests.post(f"{server.rest_url}/v1/models/{NAME}:{method}", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == answer


def test_a_missing_input_takes_the_signature_default(server):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = NAME
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(request, timeout=30)
    assert list(response.outputs["y"].float_val) == [2.0]  # x defaults to [0.0]
