"""`GrpcClient`: TF Serving's gRPC PredictionService and ModelService through the official
stubs, tensors as `tensor_content`. The stubs' protos live in the `tensorflow` package, so
importing this loads it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import json_format
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from fmnist.errors import UserError
from fmnist.serving.client.base import (
    DEFAULT_MAX_MESSAGE_BYTES,
    ServingError,
    T,
    _check_choice,
    _Client,
)
from fmnist.serving.wire import tensor_proto
from fmnist.serving.wire.status import StatusError


class GrpcClient(_Client):
    """TF Serving's gRPC PredictionService and ModelService through the official stubs."""

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
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def _spec(
        self, version: int | None, label: str | None, signature: str | None = None
    ) -> model_pb2.ModelSpec:
        _check_choice(version, label)
        spec = model_pb2.ModelSpec(name=self.model_name)
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
        request = predict_pb2.PredictRequest(model_spec=self._spec(version, label, signature))
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(_tensor_proto(value))
        response = self._rpc(self._predict.Predict, request, self._where(version, label))
        outputs = {name: _ndarray(proto) for name, proto in response.outputs.items()}
        spec = response.model_spec
        return outputs, (spec.version.value if spec.HasField("version") else None)

    def metadata(self, *, version=None, label=None):
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=self._spec(version, label), metadata_field=["signature_def"]
        )
        response = self._rpc(self._predict.GetModelMetadata, request, self._where(version, label))
        return json_format.MessageToDict(response, preserving_proto_field_name=True)

    def _status(self, version, label, timeout, retries):
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=self._spec(version, label))
        where = self._where(version, label)
        response = self._rpc(self._models.GetModelStatus, request, where, timeout, retries)
        return [
            {
                "version": int(s.version),
                "state": get_model_status_pb2.ModelVersionStatus.State.Name(s.state),
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
