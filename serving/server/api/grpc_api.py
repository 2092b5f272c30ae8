"""TF Serving's gRPC services, PredictionService and ModelService: each method translates its
request message into a data plane call and the answer back into its response message.

The methods run on the gRPC transport's worker pool (`transport.grpc_server.Method`); no
grpcio import here, so warm-up and the unit tests use them on installs without it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from fmnist.errors import UserError
from fmnist.serving.server.api import responses
from fmnist.serving.server.core.config import models_from_proto
from fmnist.serving.server.core.data_plane import Answered, DataPlane, Target, target_of
from fmnist.serving.server.servables.examples import serialized_examples
from fmnist.serving.server.transport.grpc_server import Method
from fmnist.serving.wire import messages as pb
from fmnist.serving.wire import tensor_proto
from fmnist.serving.wire.status import StatusError, failed_precondition, invalid_argument

API = "grpc"


class GrpcApi:
    """PredictionService and ModelService over one data plane."""

    def __init__(self, plane: DataPlane, max_tensor_bytes: int | None = None, reload: bool = True):
        self.plane = plane
        self.max_tensor_bytes = max_tensor_bytes
        self.reload = reload  # False: HandleReloadConfigRequest is refused (several processes)

    def services(self) -> dict[str, dict[str, Method]]:
        """Service name -> method name -> Method, for the transport."""
        calls = {
            pb.PREDICTION_SERVICE: {
                "Predict": self.predict,
                "Classify": self.classify,
                "Regress": self.regress,
                "MultiInference": self.multi_inference,
                "GetModelMetadata": self.metadata,
            },
            pb.MODEL_SERVICE: {
                "GetModelStatus": self.status,
                "HandleReloadConfigRequest": self.reload_config,
            },
        }
        services = {
            service: {
                name: Method(*pb.SERVICES[service][name], call) for name, call in methods.items()
            }
            for service, methods in calls.items()
        }
        predict = services[pb.PREDICTION_SERVICE]["Predict"]
        services[pb.PREDICTION_SERVICE]["Predict"] = replace(predict, call_async=self.predict_async)
        return services

    # --- PredictionService --------------------------------------------------------------

    def predict(self, request: Any, deadline: float | None) -> pb.PredictResponse:
        return self.plane.predict(*self._predict_call(request), deadline=deadline, respond=_answer)

    async def predict_async(self, request: Any, deadline: float | None) -> pb.PredictResponse:
        call = self._predict_call(request)
        return await self.plane.predict_async(*call, deadline=deadline, respond=_answer)

    def _predict_call(self, request: Any) -> tuple:
        """(API, target, signature name, inputs, output filter) of a PredictRequest."""
        target = self._target(request, "predict")

        def inputs(_servable: Any) -> dict[str, Any]:
            return {
                alias: tensor_proto.to_ndarray(proto, self.max_tensor_bytes, name=alias)
                for alias, proto in request.inputs.items()
            }

        signature = request.model_spec.signature_name
        return API, target, signature, inputs, list(request.output_filter)

    def classify(self, request: Any, deadline: float | None) -> pb.ClassificationResponse:
        target = self._target(request, "classify")
        return self._examples(
            self.plane.classify, pb.ClassificationResponse, target, request, deadline
        )

    def regress(self, request: Any, deadline: float | None) -> pb.RegressionResponse:
        target = self._target(request, "regress")
        return self._examples(self.plane.regress, pb.RegressionResponse, target, request, deadline)

    def _examples(self, run: Callable, response_type: type, target: Target, request, deadline):
        def respond(answered: Answered, result: Any) -> Any:
            response = response_type(result=result)
            responses.fill_model_spec(response.model_spec, answered)
            return response

        return run(
            API,
            target,
            request.model_spec.signature_name,
            lambda: serialized_examples(request.input),
            deadline=deadline,
            respond=respond,
        )

    def multi_inference(self, request: Any, deadline: float | None) -> pb.MultiInferenceResponse:
        return self.plane.multi_inference(API, request, deadline=deadline)

    def metadata(self, request: Any, _deadline: float | None) -> pb.GetModelMetadataResponse:
        return self.plane.metadata(
            API,
            self._target(request, "metadata"),
            list(request.metadata_field),
            respond=responses.metadata_response,
        )

    # --- ModelService -------------------------------------------------------------------

    def status(self, request: Any, _deadline: float | None) -> pb.GetModelStatusResponse:
        target = self._target(request, "status")
        # As in TF Serving, only an explicit version narrows the answer; labels don't.
        return responses.model_status_response(self.plane.status(API, target.model, target.version))

    def reload_config(self, request: Any, _deadline: float | None) -> pb.ReloadConfigResponse:
        """Serve the request's ModelServerConfig from now on (blocks until its models load)."""
        try:
            if not self.reload:
                raise failed_precondition(
                    "HandleReloadConfigRequest is not supported with --server_processes above 1 "
                    "(each process holds its own models); use --model_config_file_poll_wait_seconds"
                )
            if request.config.WhichOneof("config") != "model_config_list":
                raise invalid_argument(
                    "ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
                    "ModelConfigList is currently supported"
                )
            try:
                models = models_from_proto(request.config, "ReloadConfigRequest")
            except UserError as err:
                raise invalid_argument(str(err)) from None
        except StatusError as err:
            self.plane.refused(API, "reload_config", "", err)
            raise
        self.plane.reload(API, models)
        return pb.ReloadConfigResponse()

    def _target(self, request: Any, method: str) -> Target:
        """The model, version or label the request's ModelSpec names (it must have one)."""
        if not request.HasField("model_spec"):
            error = invalid_argument("Missing ModelSpec")
            self.plane.refused(API, method, "", error)
            raise error
        return target_of(request.model_spec)


def _answer(answered: Answered, outputs: dict[str, Any]) -> pb.PredictResponse:
    response = pb.PredictResponse()
    responses.fill_model_spec(response.model_spec, answered)
    for alias, value in outputs.items():
        tensor_proto.fill_tensor_proto(value, response.outputs[alias])
    return response
