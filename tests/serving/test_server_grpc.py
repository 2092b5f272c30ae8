"""The gRPC API through the official TF Serving stubs, against TF Serving's own test models."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow.core.example import example_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

Code = grpc.StatusCode


@pytest.fixture(scope="module")
def channel(half_plus_two_server):
    with grpc.insecure_channel(half_plus_two_server.grpc_target) as channel:
        yield channel


@pytest.fixture(scope="module")
def stub(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def predict_request(values, model="half_plus_two", **spec) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.asarray(values, np.float32)))
    return request


def rpc_error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=30)
    return caught.value


def test_predict_answers_and_echoes_the_effective_model_spec(stub):
    response = stub.Predict(predict_request([[1.0], [2.0], [5.0]]), timeout=30)
    assert response.model_spec.name == "half_plus_two"
    assert response.model_spec.version.value == 123
    assert response.model_spec.signature_name == "serving_default"
    y = response.outputs["y"]
    assert list(y.float_val) == [2.5, 3.0, 4.5]  # typed fields, as TF Serving fills them
    np.testing.assert_array_equal(tf.make_ndarray(y), [[2.5], [3.0], [4.5]])


def test_predict_reads_typed_value_fields_too(stub):
    request = predict_request([0.0])
    tensor = request.inputs["x"]
    tensor.Clear()
    tensor.dtype = tf.float32.as_datatype_enum
    tensor.tensor_shape.dim.add(size=3)
    tensor.float_val.extend([1.0, 3.0])  # TF pads a short list with its last value
    response = stub.Predict(request, timeout=30)
    assert list(response.outputs["y"].float_val) == [2.5, 3.5, 3.5]


@pytest.mark.parametrize(
    ("spec", "version"),
    [({"version": 123}, 123), ({"version_label": "stable"}, 123), ({}, 123)],
)
def test_versions_and_labels_resolve(stub, spec, version):
    response = stub.Predict(predict_request([1.0], **spec), timeout=30)
    assert response.model_spec.version.value == version


def test_half_plus_three(stub):
    response = stub.Predict(predict_request([1.0, 2.0, 5.0], model="half_plus_three"), timeout=30)
    assert list(response.outputs["y"].float_val) == [3.5, 4.0, 5.5]


@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        ({"model": "nope"}, Code.NOT_FOUND, "Servable not found for request: Latest(nope)"),
        ({"version": 9}, Code.NOT_FOUND, "Specific(half_plus_two, 9)"),
        ({"version_label": "beta"}, Code.INVALID_ARGUMENT, "Unrecognized servable version label"),
        (
            {"signature_name": "nope"},
            Code.FAILED_PRECONDITION,
            'Serving signature key "nope" not found.',
        ),
    ],
)
def test_predict_errors_use_tf_servings_codes(stub, change, code, message):
    error = rpc_error(stub.Predict, predict_request([1.0], **change))
    assert error.code() == code
    assert message in error.details()


def test_bad_inputs_are_invalid_argument(stub):
    wrong_type = predict_request([1.0])
    wrong_type.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0], np.float64)))
    missing = predict_request([1.0])
    missing.inputs["z"].CopyFrom(missing.inputs.pop("x"))
    filtered = predict_request([1.0])
    filtered.output_filter.append("nope")
    short_content = predict_request([1.0, 2.0])
    short_content.inputs["x"].tensor_shape.dim[0].size = 3
    no_spec = predict_pb2.PredictRequest()
    for request, message in [
        (wrong_type, "DT_DOUBLE"),
        (missing, "Missing but required: {x}"),
        (filtered, "output tensor alias not found in signature: nope"),
        (short_content, "tensor_content"),
        (no_spec, "Missing ModelSpec"),
    ]:
        error = rpc_error(stub.Predict, request)
        assert error.code() == Code.INVALID_ARGUMENT, error.details()
        assert message in error.details()


def test_metadata_is_the_saved_models_own_signature_defs(stub, serving_fixtures: Path):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "half_plus_two"
    response = stub.GetModelMetadata(request, timeout=30)
    assert response.model_spec.name == "half_plus_two"
    assert response.model_spec.version.value == 123
    served = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(served)
    saved_model = saved_model_pb2.SavedModel()
    pb = serving_fixtures / "saved_model_half_plus_two_cpu" / "00000123" / "saved_model.pb"
    saved_model.ParseFromString(pb.read_bytes())
    assert dict(served.signature_def) == dict(saved_model.meta_graphs[0].signature_def)

    request.ClearField("metadata_field")
    assert rpc_error(stub.GetModelMetadata, request).code() == Code.INVALID_ARGUMENT
    request.metadata_field.append("graph")
    assert "not supported" in rpc_error(stub.GetModelMetadata, request).details()


def example(**features: float) -> example_pb2.Example:
    result = example_pb2.Example()
    for name, value in features.items():
        result.features.feature[name].float_list.value.append(value)
    return result


def test_classify_and_regress_take_tf_examples(stub):
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "half_plus_two"
    classify.model_spec.signature_name = "classify_x_to_y"
    classify.input.example_list.examples.extend([example(x=20.0), example(x=10.0)])
    response = stub.Classify(classify, timeout=30)
    assert response.model_spec.signature_name == "classify_x_to_y"
    assert response.model_spec.version.value == 123
    scores = [[c.score for c in cs.classes] for cs in response.result.classifications]
    assert scores == [[12.0], [7.0]]

    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = "half_plus_two"
    regress.model_spec.signature_name = "regress_x_to_y"
    with_context = regress.input.example_list_with_context
    with_context.context.CopyFrom(example(x=10.0))
    with_context.examples.extend([example(), example(x=80.0)])
    response = stub.Regress(regress, timeout=30)
    assert [r.value for r in response.result.regressions] == [7.0, 42.0]


def test_classify_and_regress_errors(stub):
    empty = classification_pb2.ClassificationRequest()
    empty.model_spec.name = "half_plus_two"
    empty.model_spec.signature_name = "classify_x_to_y"
    error = rpc_error(stub.Classify, empty)
    assert (error.code(), error.details()) == (Code.INVALID_ARGUMENT, "Input is empty.")

    wrong = regression_pb2.RegressionRequest()
    wrong.model_spec.name = "half_plus_two"
    wrong.model_spec.signature_name = "nope"
    wrong.input.example_list.examples.append(example(x=1.0))
    error = rpc_error(stub.Regress, wrong)
    assert error.code() == Code.INVALID_ARGUMENT
    assert "No signature was found with the name: nope" in error.details()


def test_model_status(channel):
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "half_plus_two"
    response = stub.GetModelStatus(request, timeout=30)
    (status,) = response.model_version_status
    assert status.version == 123
    assert status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    request.model_spec.name = "nope"
    assert rpc_error(stub.GetModelStatus, request).code() == Code.NOT_FOUND


def test_health_service(channel):
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", "tensorflow.serving.PredictionService"):
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=30)
        assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_a_message_over_the_limit_is_resource_exhausted(stub):
    error = rpc_error(stub.Predict, predict_request(np.zeros((300_000, 1))))  # 1.2 MB > 1 MiB
    assert error.code() == Code.RESOURCE_EXHAUSTED
    splat = predict_request([0.0])  # one value that TF would repeat over a huge shape
    splat.inputs["x"].Clear()
    splat.inputs["x"].dtype = tf.float32.as_datatype_enum
    splat.inputs["x"].tensor_shape.dim.add(size=10**12)
    splat.inputs["x"].float_val.append(1.0)
    error = rpc_error(stub.Predict, splat)
    assert error.code() == Code.INVALID_ARGUMENT  # TF Serving: "tensor parsing error"
    assert "limited to" in error.details()
    assert stub.Predict(predict_request([1.0]), timeout=30).outputs["y"].float_val == [2.5]


def test_concurrent_requests_are_all_answered(stub):
    from concurrent.futures import ThreadPoolExecutor

    def call(i: int) -> float:
        return stub.Predict(predict_request([float(i)]), timeout=30).outputs["y"].float_val[0]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(call, range(200)))
    assert answers == [0.5 * i + 2 for i in range(200)]
