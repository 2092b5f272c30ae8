"""Response protos of the gRPC API (needs TensorFlow Serving's protos).

The REST API answers the same content as JSON built from plain data (`rest_json`), so it
runs without TensorFlow; tests compare the two."""

from __future__ import annotations

from tensorflow.core.protobuf import error_codes_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2

from fmnist.serving.server.registry import Servable, VersionStatus
from fmnist.serving.server.rest_json import SIGNATURE_DEF_FIELD
from fmnist.serving.wire.status import invalid_argument


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
