"""`GrpcClient`: TF Serving's gRPC PredictionService and ModelService, tensors as
`tensor_content`. The messages are the project's own (`serving/wire/messages.py`, the same
bytes as TF Serving's), so it needs grpcio and protobuf, not TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import json_format

from fmnist.errors import UserError
from fmnist.serving.client.base import (
    DEFAULT_MAX_MESSAGE_BYTES,
    ServingError,
    T,
    _check_choice,
    _Client,
)
from fmnist.serving.wire import messages as pb
from fmnist.serving.wire import tensor_proto
from fmnist.serving.wire.status import StatusError


class GrpcClient(_Client):
    """TF Serving's gRPC PredictionService and ModelService."""

    api = "gRPC"

    def __init__(
        self,
        target: str,
        model_name: str,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        **options: Any,
    ) -> None:
        super().__init__(model_name, **options)
        self.target = self.endpoint = target
        self.max_message_bytes = max_message_bytes
        self._channel = grpc.insecure_channel(
            target,
            options=[
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.max_receive_message_length", max_message_bytes),
                # Reconnect about as often as we retry (gRPC's own backoff grows to 120 s).
                ("grpc.initial_reconnect_backoff_ms", max(int(self.backoff * 1000), 100)),
                ("grpc.min_reconnect_backoff_ms", max(int(self.backoff * 1000), 100)),
                ("grpc.max_reconnect_backoff_ms", max(int(self.max_backoff * 1000), 100)),
            ],
        )
        self._methods = {
            method: self._channel.unary_unary(
                f"/{service}/{method}",
                request_serializer=request.SerializeToString,
                response_deserializer=response.FromString,
            )
            for service in (pb.PREDICTION_SERVICE, pb.MODEL_SERVICE)
            for method, (request, response) in pb.SERVICES[service].items()
        }

    def model_spec(
        self, version: int | None = None, label: str | None = None, signature: str | None = None
    ) -> pb.ModelSpec:
        """The ModelSpec of this client's model, a version or a label, and a signature."""
        _check_choice(version, label)
        spec = pb.ModelSpec(name=self.model_name)
        if signature:
            spec.signature_name = signature
        if version is not None:
            spec.version.value = version
        elif label is not None:
            spec.version_label = label
        return spec

    def _rpc(
        self,
        method: Callable[..., T],
        request: Any,
        where: str,
        timeout: float | None = None,
        retries: int | None = None,
    ) -> T:
        def attempt(seconds: float) -> T:
            try:
                return method(request, timeout=seconds)
            except grpc.RpcError as err:
                code, message = err.code().name, err.details() or ""
                if code == "RESOURCE_EXHAUSTED" and "larger than max" in message:
                    message += (
                        f" (client max_message_bytes {self.max_message_bytes}: raise it or "
                        "send smaller batches)"
                    )
                raise ServingError(code, message) from None

        return self._call(attempt, where, timeout, retries)

    def _predict_batch(self, inputs, version, label, signature):
        request = pb.PredictRequest(model_spec=self.model_spec(version, label, signature))
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(_tensor_proto(value))
        response = self._rpc(self._methods["Predict"], request, self._where(version, label))
        outputs = {name: _ndarray(proto) for name, proto in response.outputs.items()}
        spec = response.model_spec
        return outputs, (spec.version.value if spec.HasField("version") else None)

    def call(self, method: str, request: Any) -> Any:
        """One PredictionService call (`Predict`, `Classify`, `Regress`, `MultiInference`)
        with a request message as built, its model spec included: the response message.
        Deadline and retries as every call; e.g. to resend a logged request as it was."""
        if method not in pb.SERVICES[pb.PREDICTION_SERVICE]:
            raise UserError(f"no PredictionService method {method!r}")
        return self._rpc(self._methods[method], request, f"{self.where}, {method}")

    def metadata(self, *, version=None, label=None):
        request = pb.GetModelMetadataRequest(
            model_spec=self.model_spec(version, label), metadata_field=["signature_def"]
        )
        where = self._where(version, label)
        response = self._rpc(self._methods["GetModelMetadata"], request, where)
        return json_format.MessageToDict(
            response, preserving_proto_field_name=True, descriptor_pool=pb.POOL
        )

    def _status(self, version, label, timeout, retries):
        request = pb.GetModelStatusRequest(model_spec=self.model_spec(version, label))
        where = self._where(version, label)
        response = self._rpc(self._methods["GetModelStatus"], request, where, timeout, retries)
        return [
            {
                "version": int(s.version),
                "state": pb.ModelVersionStatus.State.Name(s.state),
                "error_code": int(s.status.error_code),
                "error_message": s.status.error_message,
            }
            for s in response.model_version_status
        ]

    def close(self) -> None:
        self._channel.close()


def _tensor_proto(value: Any) -> Any:
    try:
        return tensor_proto.to_tensor_proto(value)
    except StatusError as err:
        raise UserError(f"cannot send to TF Serving: {err.message}") from None


def _ndarray(proto: Any) -> Any:
    try:
        return tensor_proto.to_ndarray(proto)
    except StatusError as err:
        raise UserError(f"TF Serving answered a tensor this client cannot read: {err}") from None
