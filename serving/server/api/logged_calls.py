"""The request and response messages a request log records for an answered call: gRPC's
as sent, a REST Predict, Classify or Regress as the gRPC request and response it equals
(TF Serving's REST handler builds the same request from the JSON)."""

from __future__ import annotations

from typing import Any

from fmnist.serving.server.api import responses
from fmnist.serving.server.core.data_plane import Call
from fmnist.serving.wire import messages as pb
from fmnist.serving.wire.tensor_proto import fill_tensor_proto, to_tensor_proto

_REST_KINDS = {
    "predict": (pb.PredictRequest, pb.PredictResponse),
    "classify": (pb.ClassificationRequest, pb.ClassificationResponse),
    "regress": (pb.RegressionRequest, pb.RegressionResponse),
}


def logged_messages(call: Call) -> tuple[Any, Any]:
    """(request, response) messages of an answered Predict, Classify, Regress or
    MultiInference."""
    if call.api != "rest":
        return call.request, call.response
    request_kind, response_kind = _REST_KINDS[call.method]
    request, response = request_kind(), response_kind()
    _fill_request_spec(request.model_spec, call)
    responses.fill_model_spec(response.model_spec, call.answered)
    if call.method == "predict":
        for alias, array in call.inputs.items():
            request.inputs[alias].CopyFrom(to_tensor_proto(array))
        for alias, array in call.result.items():
            fill_tensor_proto(array, response.outputs[alias])
    else:
        for serialized in call.inputs:  # the JSON examples, context merged, as serialized
            request.input.example_list.examples.add().ParseFromString(serialized)
        response.result.CopyFrom(call.result)
    return request, response


def _fill_request_spec(spec: Any, call: Call) -> None:
    """The ModelSpec the REST URL and body name: model, version or label, signature."""
    spec.name = call.target.model
    if call.target.version is not None:
        spec.version.value = call.target.version
    elif call.target.label is not None:
        spec.version_label = call.target.label
    spec.signature_name = call.request.get("signature_name", "")
