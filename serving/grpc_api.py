"""TF Serving's gRPC services on the official stubs: PredictionService, ModelService, health.

Handlers run on the gRPC server's thread pool; each holds its servable (so a version
being retired finishes the request) and aborts with TF Serving's status code on error.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_status_pb2,
    input_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from fmnist.serving import responses, tensors
from fmnist.serving.metrics import Metrics
from fmnist.serving.servables import Servable, ServableRegistry
from fmnist.serving.status import ServingError, invalid_argument

SERVICE_NAMES = ("tensorflow.serving.PredictionService", "tensorflow.serving.ModelService")
_MESSAGE_LIMIT = 1024  # TF Serving truncates gRPC error messages here, keeping trailers small


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> None:
    if len(message) > _MESSAGE_LIMIT:
        message = message[:_MESSAGE_LIMIT] + "...TRUNCATED"
    context.abort(code, message)


class _Api:
    def __init__(
        self,
        registry: ServableRegistry,
        metrics: Metrics,
        method_check: bool = False,
        max_tensor_bytes: int | None = None,
    ):
        self.registry = registry
        self.metrics = metrics
        self.method_check = method_check
        self.max_tensor_bytes = max_tensor_bytes

    def _serve(
        self,
        context: grpc.ServicerContext,
        method: str,
        request: Any,
        handle: Callable[[Servable, Any], Any],
        validate: Callable[[Any], None] | None = None,
        acquire: bool = True,
    ) -> Any:
        """Resolve the request's servable (unless `acquire` is off), run `handle`, record
        metrics, and abort with the status code of any error."""
        record = self.metrics.start("grpc", method)
        try:
            if not request.HasField("model_spec"):
                raise invalid_argument("Missing ModelSpec")
            spec = request.model_spec
            if spec.name in self.registry.managers:
                record.model = spec.name
            if validate is not None:
                validate(request)
            if acquire:
                version, label = responses.version_choice(spec)
                with self.registry.acquire(spec.name, version, label) as servable:
                    record.version = str(servable.version)
                    response = handle(servable, request)
            else:
                response = handle(None, request)
        except ServingError as err:
            self.metrics.finish(record, err.code.name)
            _abort(context, err.code, err.message)
        except Exception as err:  # a bug must not take the server down: report INTERNAL
            self.metrics.finish(record, "INTERNAL")
            _abort(context, grpc.StatusCode.INTERNAL, f"{type(err).__name__}: {err}")
        self.metrics.finish(record, "OK")
        return response


class PredictionService(_Api, prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict, Classify, Regress and GetModelMetadata (MultiInference is UNIMPLEMENTED)."""

    def Predict(self, request, context):
        return self._serve(context, "predict", request, self._predict)

    def Classify(self, request, context):
        return self._serve(context, "classify", request, self._classify)

    def Regress(self, request, context):
        return self._serve(context, "regress", request, self._regress)

    def GetModelMetadata(self, request, context):
        return self._serve(
            context,
            "metadata",
            request,
            lambda servable, _: responses.metadata_response(servable),
            validate=lambda r: responses.check_metadata_fields(list(r.metadata_field)),
        )

    def _predict(self, servable: Servable, request: predict_pb2.PredictRequest):
        inputs = {
            alias: tensors.to_ndarray(proto, self.max_tensor_bytes)
            for alias, proto in request.inputs.items()
        }
        signature, outputs = servable.model.predict(
            request.model_spec.signature_name, inputs, list(request.output_filter)
        )
        response = predict_pb2.PredictResponse()
        responses.fill_model_spec(response.model_spec, servable, signature)
        for alias, value in outputs.items():
            tensors.fill_tensor_proto(value, response.outputs[alias])
        return response

    def _classify(self, servable: Servable, request: classification_pb2.ClassificationRequest):
        signature, result = servable.model.classify(
            request.model_spec.signature_name, serialized_examples(request.input), self.method_check
        )
        response = classification_pb2.ClassificationResponse(result=result)
        responses.fill_model_spec(response.model_spec, servable, signature)
        return response

    def _regress(self, servable: Servable, request: regression_pb2.RegressionRequest):
        signature, result = servable.model.regress(
            request.model_spec.signature_name, serialized_examples(request.input), self.method_check
        )
        response = regression_pb2.RegressionResponse(result=result)
        responses.fill_model_spec(response.model_spec, servable, signature)
        return response


class ModelService(_Api, model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus (HandleReloadConfigRequest is UNIMPLEMENTED)."""

    def GetModelStatus(self, request, context):
        return self._serve(context, "status", request, self._status, acquire=False)

    def _status(self, _, request: get_model_status_pb2.GetModelStatusRequest):
        spec = request.model_spec
        # As in TF Serving, only an explicit version narrows the answer; labels don't.
        version = spec.version.value if spec.HasField("version") else None
        return responses.model_status_response(self.registry.status(spec.name, version))


def serialized_examples(request_input: input_pb2.Input) -> list[bytes]:
    """tf.Examples of a Classify/Regress Input, serialized; a context is prepended to each
    example's bytes, which protobuf parsing merges (example features win), as TF Serving does."""
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        return [e.SerializeToString() for e in request_input.example_list.examples]
    if kind == "example_list_with_context":
        with_context = request_input.example_list_with_context
        context = with_context.context.SerializeToString()
        return [context + e.SerializeToString() for e in with_context.examples]
    return []


class HealthService(health.HealthServicer):
    """The standard gRPC health service, which also ends its Watch streams at shutdown."""

    def shut_down(self) -> None:
        """Every service NOT_SERVING, then every Watch stream closed (status OK), as gRPC's C++
        servers do: an open stream would otherwise hold a graceful stop to its deadline."""
        self.enter_graceful_shutdown()
        with self._lock:  # the library keeps no public list of its watchers
            watchers = [w for ws in self._send_response_callbacks.values() for w in ws]
        for send in watchers:
            send(None)


def build_server(
    registry: ServableRegistry,
    metrics: Metrics,
    *,
    threads: int,
    max_message_bytes: int,
    method_check: bool = False,
    health_check: bool = False,
) -> tuple[grpc.Server, HealthService | None]:
    """A grpc.Server with the services registered (not yet bound or started)."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="grpc"),
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),
        ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(registry, metrics, method_check, max_message_bytes), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelService(registry, metrics), server
    )
    health_servicer = None
    if health_check:
        health_servicer = HealthService()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        for service in ("", *SERVICE_NAMES):
            health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    return server, health_servicer
