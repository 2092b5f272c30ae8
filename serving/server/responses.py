"""Response messages of the gRPC API (the project's own wire types, no TensorFlow).

The REST API answers the same content as JSON built from plain data (`rest_json`); tests
compare the two."""

from __future__ import annotations

from fmnist.serving.server.registry import Servable, VersionStatus
from fmnist.serving.server.rest_json import SIGNATURE_DEF_FIELD
from fmnist.serving.wire import messages as pb
from fmnist.serving.wire.status import Code, invalid_argument


def version_choice(spec: pb.ModelSpec) -> tuple[int | None, str | None]:
    """(version, label) a ModelSpec asks for; (None, None) means the latest version."""
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return spec.version.value, None
    if choice == "version_label":
        return None, spec.version_label
    return None, None


def fill_model_spec(
    spec: pb.ModelSpec, servable: Servable, signature_name: str | None = None
) -> None:
    """The effective spec a response echoes: name, resolved version, signature used."""
    spec.name = servable.name
    spec.version.value = servable.version
    if signature_name is not None:
        spec.signature_name = signature_name


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


def check_metadata_fields(fields: list[str]) -> None:
    if not fields:
        raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
    for field in fields:
        if field != SIGNATURE_DEF_FIELD:
            raise invalid_argument(f"Metadata field {field} is not supported")


def signature_def_map(servable: Servable) -> pb.SignatureDefMap:
    """The SignatureDefs exactly as the version declares them (saved_model.pb or TFLite)."""
    signature_map = pb.SignatureDefMap()
    for name, signature in servable.model.signature_defs.items():
        signature_map.signature_def[name].CopyFrom(signature)
    return signature_map


def metadata_response(servable: Servable) -> pb.GetModelMetadataResponse:
    response = pb.GetModelMetadataResponse()
    fill_model_spec(response.model_spec, servable)
    response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_def_map(servable))
    return response
