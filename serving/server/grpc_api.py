"""TF Serving's gRPC services, PredictionService and ModelService, as plain functions
request -> response that `grpc_server` runs on its worker pool (no grpcio import here:
warm-up replays requests through these functions on installs without it).

Each call holds its servable (so a version being retired finishes the request), records
metrics, and fails with a `StatusError` carrying TF Serving's status code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf import message

from fmnist.serving.server import responses
from fmnist.serving.server.metrics import Metrics
from fmnist.serving.server.registry import Servable, ServableRegistry
from fmnist.serving.wire import messages as pb
from fmnist.serving.wire import tensor_proto
from fmnist.serving.wire.status import Code, StatusError, invalid_argument

SERVICE_NAMES = (pb.PREDICTION_SERVICE, pb.MODEL_SERVICE)


@dataclass(frozen=True)
class Method:
    """One unary method: its message types and `call(request, deadline)`, where `deadline` is a
    `time.monotonic()` value or None; no `call` means UNIMPLEMENTED (as in TF Serving's stubs)."""

    request: type[message.Message]
    response: type[message.Message]
    call: Callable[[Any, float | None], Any] | None = None

    def parse(self, raw: bytes) -> Any:
        try:
            return self.request.FromString(raw)
        except message.DecodeError:  # gRPC's own wording for an unparseable request
            raise StatusError(Code.INTERNAL, "Exception deserializing request!") from None


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
        method: str,
        request: Any,
        handle: Callable[[Servable | None, Any], Any],
        validate: Callable[[Any], None] | None = None,
        acquire: bool = True,
        spec_of: Callable[[Any], Any] | None = None,
    ) -> Any:
        """Resolve the request's servable (unless `acquire` is off), run `handle`, record
        metrics; any failure is a StatusError with TF Serving's code. `spec_of` finds the
        ModelSpec of requests that hold it elsewhere than in `model_spec`."""
        record = self.metrics.start("grpc", method)
        try:
            if spec_of is not None:
                spec = spec_of(request)
            elif not request.HasField("model_spec"):
                raise invalid_argument("Missing ModelSpec")
            else:
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
        except StatusError as err:
            self.metrics.finish(record, err.code.name)
            raise
        except Exception as err:  # a bug must not take the server down: report INTERNAL
            self.metrics.finish(record, "INTERNAL")
            raise StatusError(Code.INTERNAL, f"{type(err).__name__}: {err}") from None
        self.metrics.finish(record, "OK")
        return response


class PredictionService(_Api):
    """Predict, Classify, Regress, MultiInference and GetModelMetadata."""

    name = SERVICE_NAMES[0]

    def methods(self) -> dict[str, Method]:
        calls = {
            "Predict": self.predict,
            "Classify": self.classify,
            "Regress": self.regress,
            "GetModelMetadata": self.metadata,
            "MultiInference": self.multi_inference,
        }
        return _methods(self.name, calls)

    def predict(self, request: pb.PredictRequest, deadline: float | None):
        def handle(servable: Servable, request: pb.PredictRequest):
            inputs = {
                alias: tensor_proto.to_ndarray(proto, self.max_tensor_bytes, name=alias)
                for alias, proto in request.inputs.items()
            }
            signature, outputs = servable.model.predict(
                request.model_spec.signature_name,
                inputs,
                list(request.output_filter),
                deadline=deadline,
            )
            response = pb.PredictResponse()
            responses.fill_model_spec(response.model_spec, servable, signature)
            for alias, value in outputs.items():
                tensor_proto.fill_tensor_proto(value, response.outputs[alias])
            return response

        return self._serve("predict", request, handle)

    def classify(self, request: pb.ClassificationRequest, deadline: float | None):
        return self._examples("classify", request, pb.ClassificationResponse, deadline)

    def regress(self, request: pb.RegressionRequest, deadline: float | None):
        return self._examples("regress", request, pb.RegressionResponse, deadline)

    def _examples(self, method: str, request: Any, response_type: type, deadline: float | None):
        """Classify or Regress: the request's tf.Examples through the version's signature."""

        def handle(servable: Servable, request: Any):
            run = getattr(servable.model, method)  # SavedModelVersion.classify / .regress
            signature, result = run(
                request.model_spec.signature_name,
                serialized_examples(request.input),
                self.method_check,
                deadline=deadline,
            )
            response = response_type(result=result)
            responses.fill_model_spec(response.model_spec, servable, signature)
            return response

        return self._serve(method, request, handle)

    def multi_inference(self, request: pb.MultiInferenceRequest, deadline):
        def handle(servable: Servable, request: pb.MultiInferenceRequest):
            return run_multi_inference(servable.model, request, servable.version, deadline)

        return self._serve(
            "multi_inference", request, handle, validate=check_tasks, spec_of=_first_task_spec
        )

    def metadata(self, request: pb.GetModelMetadataRequest, _deadline):
        return self._serve(
            "metadata",
            request,
            lambda servable, _: responses.metadata_response(servable),
            validate=lambda r: responses.check_metadata_fields(list(r.metadata_field)),
        )


class ModelService(_Api):
    """GetModelStatus and HandleReloadConfigRequest."""

    name = SERVICE_NAMES[1]

    def methods(self) -> dict[str, Method]:
        calls = {"GetModelStatus": self.status, "HandleReloadConfigRequest": self.reload_config}
        return _methods(self.name, calls)

    def reload_config(self, request: pb.ReloadConfigRequest, _deadline):
        record = self.metrics.start("grpc", "reload_config")
        try:
            response = _reload(self.registry, request)
        except StatusError as err:
            self.metrics.finish(record, err.code.name)
            raise
        self.metrics.finish(record, "OK")
        return response

    def status(self, request: pb.GetModelStatusRequest, _deadline):
        def handle(_, request: pb.GetModelStatusRequest):
            spec = request.model_spec
            # As in TF Serving, only an explicit version narrows the answer; labels don't.
            version = spec.version.value if spec.HasField("version") else None
            return responses.model_status_response(self.registry.status(spec.name, version))

        return self._serve("status", request, handle, acquire=False)


def _methods(service: str, calls: dict[str, Callable[[Any, float | None], Any]]):
    """The service's methods (`messages.SERVICES`) with their calls."""
    return {
        name: Method(request, response, calls[name])
        for name, (request, response) in pb.SERVICES[service].items()
    }


def _first_task_spec(request: pb.MultiInferenceRequest) -> Any:
    """TF Serving serves a MultiInference from the servable of its first task's ModelSpec."""
    if not request.tasks:
        raise invalid_argument("Expected at least one task")
    return request.tasks[0].model_spec


def check_tasks(request: pb.MultiInferenceRequest) -> None:
    """TF Serving's request-level MultiInference checks, before any model runs."""
    model_name = ""
    for task in request.tasks:
        if not task.model_spec.name:
            raise invalid_argument("Found ModelSpec with an empty model name.")
        if not model_name:
            model_name = task.model_spec.name
        elif task.model_spec.name != model_name:
            raise invalid_argument(
                "All ModelSpecs in a MultiInferenceRequest must access the same model name."
            )


def run_multi_inference(
    model: Any,
    request: pb.MultiInferenceRequest,
    version: int | None = None,
    deadline: float | None = None,
) -> pb.MultiInferenceResponse:
    """Every task of a MultiInferenceRequest over its shared Input, in one model run."""
    if not request.tasks:
        raise invalid_argument("Expected at least one task")
    check_tasks(request)
    tasks = [(t.model_spec.signature_name, t.method_name) for t in request.tasks]
    results = model.multi_inference(tasks, serialized_examples(request.input), deadline=deadline)
    response = pb.MultiInferenceResponse()
    for task, (signature_name, result) in zip(request.tasks, results, strict=True):
        entry = response.results.add()
        entry.model_spec.name = task.model_spec.name
        entry.model_spec.signature_name = signature_name
        if version is not None:
            entry.model_spec.version.value = version
        if isinstance(result, pb.ClassificationResult):
            entry.classification_result.CopyFrom(result)
        else:
            entry.regression_result.CopyFrom(result)
    return response


def serialized_examples(request_input: pb.Input) -> list[bytes]:
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


def _reload(registry: ServableRegistry, request: pb.ReloadConfigRequest):
    """Serve the request's ModelServerConfig from now on (blocks until its models loaded)."""
    from fmnist.errors import UserError
    from fmnist.serving.server.config import models_from_proto

    if request.config.WhichOneof("config") != "model_config_list":
        raise invalid_argument(
            "ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
            "ModelConfigList is currently supported"
        )
    try:
        models = models_from_proto(request.config, "ReloadConfigRequest")
    except UserError as err:
        raise invalid_argument(str(err)) from None
    registry.reload(models)
    return pb.ReloadConfigResponse()
