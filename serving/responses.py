"""Response protos shared by the gRPC and REST APIs (REST renders the same protos as JSON)."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from tensorflow.core.protobuf import error_codes_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2

from fmnist.serving.servables import Servable, VersionStatus
from fmnist.serving.status import invalid_argument

SIGNATURE_DEF_FIELD = "signature_def"  # the only metadata field TF Serving supports


def version_choice(spec: model_pb2.ModelSpec) -> tuple[int | None, str | None]:
    """(version, label) a ModelSpec asks for; (None, None) means the latest version."""
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return spec.version.value, None
    if choice == "version_label":
        return None, spec.version_label
    return None, None


def fill_model_spec(
    spec: model_pb2.ModelSpec, servable: Servable, signature_name: str | None = None
) -> None:
    """The effective spec a response echoes: name, resolved version, signature used."""
    spec.name = servable.name
    spec.version.value = servable.version
    if signature_name is not None:
        spec.signature_name = signature_name


def model_status_response(
    statuses: list[VersionStatus],
) -> get_model_status_pb2.GetModelStatusResponse:
    response = get_model_status_pb2.GetModelStatusResponse()
    for status in statuses:
        entry = response.model_version_status.add(
            version=status.version,
            state=get_model_status_pb2.ModelVersionStatus.State.Value(status.state),
        )
        entry.status.SetInParent()  # always present, OK included, as TF Serving sends it
        if status.error:
            entry.status.error_code = error_codes_pb2.UNKNOWN
            entry.status.error_message = status.error
    return response


def model_status_json(statuses: list[VersionStatus]) -> dict[str, Any]:
    """`{"model_version_status": [{"version": "123", "state": ..., "status": {...}}]}`."""
    return json_format.MessageToDict(
        model_status_response(statuses), always_print_fields_with_no_presence=True
    )


def check_metadata_fields(fields: list[str]) -> None:
    if not fields:
        raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
    for field in fields:
        if field != SIGNATURE_DEF_FIELD:
            raise invalid_argument(f"Metadata field {field} is not supported")


def signature_def_map(servable: Servable) -> get_model_metadata_pb2.SignatureDefMap:
    """The SignatureDefs exactly as the version's saved_model.pb declares them."""
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for name, signature in servable.model.signature_defs.items():
        signature_map.signature_def[name].CopyFrom(signature)
    return signature_map


def metadata_response(servable: Servable) -> get_model_metadata_pb2.GetModelMetadataResponse:
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    fill_model_spec(response.model_spec, servable)
    response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_def_map(servable))
    return response


def metadata_json(servable: Servable) -> dict[str, Any]:
    """TF Serving's REST metadata: the ModelSpec and the *unpacked* SignatureDefMap as JSON."""
    spec = model_pb2.ModelSpec()
    fill_model_spec(spec, servable)
    options = {"always_print_fields_with_no_presence": True, "preserving_proto_field_name": True}
    return {
        "model_spec": json_format.MessageToDict(spec, **options),
        "metadata": {
            SIGNATURE_DEF_FIELD: json_format.MessageToDict(signature_def_map(servable), **options)
        },
    }
