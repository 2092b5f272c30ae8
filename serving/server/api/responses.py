"""The answers both APIs give as TF Serving's messages: gRPC sends them, REST prints them as
JSON the way TF Serving's REST API does (proto field names, int64 as strings, every field
present), so the two can never disagree."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from fmnist.serving.server.core.data_plane import SIGNATURE_DEF_FIELD, Answered
from fmnist.serving.server.core.registry import VersionStatus
from fmnist.serving.wire import messages as pb
from fmnist.serving.wire.status import Code


def fill_model_spec(spec: Any, answered: Answered, with_signature: bool = True) -> None:
    """The effective spec an answer echoes: name, resolved version, signature used."""
    spec.name = answered.model
    spec.version.value = answered.version
    if with_signature and answered.signature is not None:
        spec.signature_name = answered.signature


def model_status_response(statuses: list[VersionStatus]) -> pb.GetModelStatusResponse:
    response = pb.GetModelStatusResponse()
    for status in statuses:
        entry = response.model_version_status.add(
            version=status.version, state=pb.ModelVersionStatus.State.Value(status.state)
        )
        entry.status.SetInParent()  # always present, OK included, as TF Serving sends it
        if status.error:
            entry.status.error_code = Code.UNKNOWN
            entry.status.error_message = status.error
    return response


def multi_inference_response(
    request: Any, answered: Answered, results: list[tuple[str, Any]]
) -> pb.MultiInferenceResponse:
    """A result per task of the request, each with its task's effective ModelSpec."""
    response = pb.MultiInferenceResponse()
    for task, (signature_name, result) in zip(request.tasks, results, strict=True):
        entry = response.results.add()
        entry.model_spec.name = task.model_spec.name
        entry.model_spec.signature_name = signature_name
        entry.model_spec.version.value = answered.version
        if isinstance(result, pb.ClassificationResult):
            entry.classification_result.CopyFrom(result)
        else:
            entry.regression_result.CopyFrom(result)
    return response


def metadata_response(answered: Answered, signatures: Any) -> pb.GetModelMetadataResponse:
    """GetModelMetadataResponse: the ModelSpec and the SignatureDefMap packed in an Any."""
    response = pb.GetModelMetadataResponse()
    fill_model_spec(response.model_spec, answered, with_signature=False)
    response.metadata[SIGNATURE_DEF_FIELD].Pack(signatures)
    return response


def as_json(message: Any) -> dict[str, Any]:
    """A message as TF Serving's REST API prints one."""
    return json_format.MessageToDict(
        message,
        always_print_fields_with_no_presence=True,
        preserving_proto_field_name=True,
        descriptor_pool=pb.POOL,
    )


def metadata_json(answered: Answered, signatures: Any) -> dict[str, Any]:
    """TF Serving's REST metadata: the ModelSpec and the *unpacked* SignatureDefMap."""
    spec = pb.ModelSpec()
    fill_model_spec(spec, answered, with_signature=False)
    return {"model_spec": as_json(spec), "metadata": {SIGNATURE_DEF_FIELD: as_json(signatures)}}
