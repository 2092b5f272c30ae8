"""gRPC PredictionService.MultiInference as current TF Serving runs it (multi_inference.cc):
on the TF1 half_plus_two, whose classify_x_to_y and regress_x_to_y share one tf.Example
input, and on the TF2 half_plus_two, whose signatures each have their own input tensor."""

from __future__ import annotations

import grpc
import pytest
from tensorflow_serving.apis import inference_pb2, prediction_service_pb2_grpc

pytestmark = pytest.mark.integration

CLASSIFY, REGRESS = "tensorflow/serving/classify", "tensorflow/serving/regress"
PREDICT = "tensorflow/serving/predict"


@pytest.fixture(scope="module")
def stub(half_plus_two_server):
    with grpc.insecure_channel(half_plus_two_server.grpc_target) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def request(*tasks: tuple[str, str, str], xs=(1.0, 2.0)) -> inference_pb2.MultiInferenceRequest:
    """tasks: (model, signature, method) each, over tf.Examples with feature x."""
    message = inference_pb2.MultiInferenceRequest()
    for x in xs:
        example = message.input.example_list.examples.add()
        example.features.feature["x"].float_list.value.append(x)
    for model, signature, method in tasks:
        task = message.tasks.add(method_name=method)
        task.model_spec.name, task.model_spec.signature_name = model, signature
    return message


def error(stub, message) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        stub.MultiInference(message, timeout=30)
    return caught.value


def test_classify_and_regress_the_same_examples_in_one_call(stub):
    response = stub.MultiInference(
        request(
            ("half_plus_two", "classify_x_to_y", CLASSIFY),
            ("half_plus_two", "regress_x_to_y", REGRESS),
        ),
        timeout=30,
    )
    classify, regress = response.results
    assert classify.model_spec.name == "half_plus_two"
    assert classify.model_spec.signature_name == "classify_x_to_y"
    assert classify.model_spec.version.value == 123
    scores = [c.classes[0].score for c in classify.classification_result.classifications]
    assert scores == [2.5, 3.0]
    assert regress.model_spec.signature_name == "regress_x_to_y"
    assert [r.value for r in regress.regression_result.regressions] == [2.5, 3.0]


@pytest.mark.parametrize(
    ("tasks", "code", "message"),
    [
        ((), grpc.StatusCode.INVALID_ARGUMENT, "Expected at least one task"),
        (
            (
                ("half_plus_two", "regress_x_to_y", REGRESS),
                ("half_plus_three", "regress_x_to_y", REGRESS),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "All ModelSpecs in a MultiInferenceRequest must access the same model name.",
        ),
        (
            (
                ("half_plus_two", "regress_x_to_y", REGRESS),
                ("half_plus_two", "regress_x_to_y", REGRESS),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Duplicate evaluation of signature: regress_x_to_y",
        ),
        (
            (("half_plus_two", "nope", REGRESS),),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Requested signature not found in model graph: nope",
        ),
        (
            (("half_plus_two", "serving_default", PREDICT),),
            grpc.StatusCode.UNIMPLEMENTED,
            f"Unsupported signature method_name: {PREDICT}",
        ),
        (
            (("", "regress_x_to_y", REGRESS),),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Found ModelSpec with an empty model name.",
        ),
    ],
)
def test_tf_servings_request_errors(stub, tasks, code, message):
    caught = error(stub, request(*tasks))
    assert caught.code() == code
    assert caught.details() == message


def test_no_examples_is_invalid(stub):
    caught = error(stub, request(("half_plus_two", "regress_x_to_y", REGRESS), xs=()))
    assert caught.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.details() == "Input is empty."


def test_examples_fed_to_a_float_input_fail_in_the_model(stub):
    """regress_x2_to_y3 takes floats (x2:0): TF Serving feeds it the serialized examples all
    the same, and the session refuses them."""
    caught = error(
        stub,
        request(
            ("half_plus_two", "regress_x_to_y", REGRESS),
            ("half_plus_two", "regress_x2_to_y3", REGRESS),
        ),
    )
    assert caught.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "x2" in caught.details()


@pytest.fixture(scope="module")
def tf2_stub(session_model_server, serving_fixtures):
    path = serving_fixtures / "saved_model_half_plus_two_tf2_cpu"
    server = session_model_server("--model_name", "tf2", "--model_base_path", str(path))
    with grpc.insecure_channel(server.grpc_target) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def test_tf2_signatures_with_their_own_inputs_answer_together(tf2_stub):
    response = tf2_stub.MultiInference(
        request(("tf2", "classify_x_to_y", CLASSIFY), ("tf2", "regress_x_to_y", REGRESS)),
        timeout=30,
    )
    classify, regress = response.results
    scores = [c.classes[0].score for c in classify.classification_result.classifications]
    assert scores == [2.5, 3.0]
    assert [r.value for r in regress.regression_result.regressions] == [2.5, 3.0]
    assert (classify.model_spec.signature_name, regress.model_spec.version.value) == (
        "classify_x_to_y",
        123,
    )


def test_tf2_unknown_signature_is_tf_servings_error(tf2_stub):
    caught = error(tf2_stub, request(("tf2", "nope", CLASSIFY)))
    assert caught.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.details() == "Requested signature not found in model graph: nope"
