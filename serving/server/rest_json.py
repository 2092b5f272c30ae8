"""The REST API's status and metadata answers, built from plain data (no protobuf, no TF).

They are the JSON TF Serving's REST API prints for its GetModelStatusResponse and
GetModelMetadataResponse protos (proto field names, int64 as strings, defaults included),
so a TFLite-only install without TensorFlow answers exactly as a full one does; tests
compare them with `json_format.MessageToDict` of the protos that `responses` builds.
"""

from __future__ import annotations

from typing import Any

from fmnist.serving.server.registry import Servable, VersionStatus
from fmnist.serving.wire.signature import signature_def_map_json

SIGNATURE_DEF_FIELD = "signature_def"  # the only metadata field TF Serving supports


def model_status_json(statuses: list[VersionStatus]) -> dict[str, Any]:
    """`{"model_version_status": [{"version": "123", "state": ..., "status": {...}}]}`; a
    load failure's status is UNKNOWN with its message, as `responses` sends it over gRPC."""
    return {
        "model_version_status": [
            {
                "version": str(status.version),
                "state": status.state,
                "status": {
                    "error_code": "UNKNOWN" if status.error else "OK",
                    "error_message": status.error,
                },
            }
            for status in statuses
        ]
    }


def model_spec_json(servable: Servable) -> dict[str, Any]:
    """The effective ModelSpec a metadata answer echoes: name and resolved version."""
    return {"name": servable.name, "signature_name": "", "version": str(servable.version)}


def metadata_json(servable: Servable) -> dict[str, Any]:
    """TF Serving's REST metadata: the ModelSpec and the *unpacked* SignatureDefMap."""
    return {
        "model_spec": model_spec_json(servable),
        "metadata": {SIGNATURE_DEF_FIELD: signature_def_map_json(servable.model.signatures)},
    }
