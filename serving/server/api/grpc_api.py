"""TF Serving's PredictionService and ModelService: each method parses its request, makes
one data plane call and builds its response from the plain answer (no grpcio import).
"""

from __future__ import annotations

from functools import partial, partialmethod
from typing import Any

from fmnist.errors import UserError
from fmnist.serving.server.api import responses
from fmnist.serving.server.core.config import models_from_proto
from fmnist.serving.server.core.data_plane import Answered, Call, DataPlane, Target, target_of
from fmnist.serving.server.transport.methods import Method, parse_request
from fmnist.serving.wire import messages as pb
from fmnist.serving.wire import tensor_proto
from fmnist.serving.wire.status import StatusError, failed_precondition, invalid_argument

API = "grpc"


class GrpcApi:
    """PredictionService and ModelService over one data plane."""

    def __init__(self, plane: DataPlane, max_tensor_bytes: int | None = None, reload: bool = True):
        self.plane = plane
        self.max_tensor_bytes = max_tensor_bytes
        self.reload_allowed = reload  # False with several processes: refused

    def services(self) -> dict[str, dict[str, Method]]:
        """Service name -> method name -> Method, for the transport."""
        methods = {
            pb.PREDICTION_SERVICE: {
                "Predict": "predict",
                "Classify": "classify",
                "Regress": "regress",
                "MultiInference": "multi_inference",
                "GetModelMetadata": "metadata",
            },
            pb.MODEL_SERVICE: {
                "GetModelStatus": "status",
                "HandleReloadConfigRequest": "reload_config",
            },
        }
        return {
            service: {
                name: Method(
                    *pb.SERVICES[service][name], partial(self._handle, service, name, method)
                )
                for name, method in names.items()
            }
            for service, names in methods.items()
        }

    async def _handle(
        self, service: str, name: str, method: str, raw: bytes, deadline: float | None
    ):
        """Parse the request (where the data plane puts work of its size), then answer it."""
        call = Call(API, method, Target(""), size=len(raw), deadline=deadline)
        parse = partial(parse_request, pb.SERVICES[service][name][0], raw)
        del raw  # only the parsed request is kept: one at the size limit is big
        call.request = await self.plane.placement.request_work(call, parse)
        del parse
        if method != "reload_config":
            call.target = self._target(call)
        return await getattr(self, method)(call, call.request)

    # --- PredictionService --------------------------------------------------------------

    async def predict(self, call: Call, request: Any) -> pb.PredictResponse:
        def inputs(_servable: Any) -> dict[str, Any]:
            return {
                alias: tensor_proto.to_ndarray(proto, self.max_tensor_bytes, name=alias)
                for alias, proto in request.inputs.items()
            }

        signature_name, output_filter = request.model_spec.signature_name, request.output_filter
        return await self.plane.predict(
            call, signature_name, inputs, list(output_filter), _predict_response
        )

    async def _examples(self, method: str, kind: type, call: Call, request: Any) -> Any:
        """Classify or Regress (`method`), answered with a `kind` response message."""
        respond = partial(_examples_response, kind)
        work = getattr(self.plane, method)
        return await work(call, request.model_spec.signature_name, request.input, respond)

    classify = partialmethod(_examples, "classify", pb.ClassificationResponse)
    regress = partialmethod(_examples, "regress", pb.RegressionResponse)

    async def multi_inference(self, call: Call, request: Any) -> pb.MultiInferenceResponse:
        respond = partial(responses.multi_inference_response, request)
        return await self.plane.multi_inference(call, respond)

    async def metadata(self, call: Call, request: Any) -> pb.GetModelMetadataResponse:
        fields = list(request.metadata_field)
        return await self.plane.metadata(call, fields, responses.metadata_response)

    # --- ModelService -------------------------------------------------------------------

    async def status(self, call: Call, _request: Any) -> pb.GetModelStatusResponse:
        # As in TF Serving, only an explicit version narrows the answer; labels don't.
        return await self.plane.status(call, responses.model_status_response)

    async def reload_config(self, call: Call, request: Any) -> pb.ReloadConfigResponse:
        """Serve the request's ModelServerConfig from now on (once its models are loaded)."""
        try:
            if not self.reload_allowed:
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
            self.plane.refused(call, err)
            raise
        await self.plane.reload(call, models)
        return pb.ReloadConfigResponse()

    def _target(self, call: Call) -> Target:
        """What the request's ModelSpec names (a MultiInference's: its first task's)."""
        request = call.request
        if call.method == "multi_inference":
            return Target(request.tasks[0].model_spec.name if request.tasks else "")
        if not request.HasField("model_spec"):
            error = invalid_argument("Missing ModelSpec")
            self.plane.refused(call, error)
            raise error
        return target_of(request.model_spec)


def _predict_response(answered: Answered, outputs: dict[str, Any]) -> pb.PredictResponse:
    response = pb.PredictResponse()
    responses.fill_model_spec(response.model_spec, answered)
    for alias, value in outputs.items():
        tensor_proto.fill_tensor_proto(value, response.outputs[alias])
    return response


def _examples_response(kind: type, answered: Answered, result: Any) -> Any:
    """A Classify or Regress response message of its result."""
    response = kind(result=result)
    responses.fill_model_spec(response.model_spec, answered)
    return response
