"""The message classes of TF Serving's wire (declared in `protos`), and its gRPC methods.

Built once, at import, in a private DescriptorPool: the full names are TF Serving's own, so
the bytes match its clients and servers, and TensorFlow or `tensorflow-serving-api` loaded
in the same process keep theirs without a clash. Messages of the two never mix directly;
where they meet, they cross as bytes (`SerializeToString` / `FromString`).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import any_pb2, descriptor_pool, message_factory, wrappers_pb2

from fmnist.serving.wire.protos import FILES

POOL = descriptor_pool.DescriptorPool()
for _well_known in (any_pb2, wrappers_pb2):
    POOL.AddSerializedFile(_well_known.DESCRIPTOR.serialized_pb)
for _file in FILES:
    POOL.Add(_file)


def message_class(full_name: str) -> Any:
    """The class of a declared message, e.g. `tensorflow.serving.PredictRequest`."""
    descriptor = POOL.FindMessageTypeByName(full_name)
    get_class = getattr(message_factory, "GetMessageClass", None)  # protobuf >= 4.22
    if get_class is None:  # older runtimes, e.g. Debian bookworm's python3-protobuf
        return message_factory.MessageFactory(POOL).GetPrototype(descriptor)
    return get_class(descriptor)


def _tf(name: str) -> Any:
    return message_class(f"tensorflow.{name}")


def _serving(name: str) -> Any:
    return message_class(f"tensorflow.serving.{name}")


# TensorFlow's types that travel inside TF Serving's messages.
TensorProto = _tf("TensorProto")
TensorShapeProto = _tf("TensorShapeProto")
TensorInfo = _tf("TensorInfo")
SignatureDef = _tf("SignatureDef")
Example = _tf("Example")
Features = _tf("Features")
Feature = _tf("Feature")
# tensorflow_serving/apis
ModelSpec = _serving("ModelSpec")
StatusProto = _serving("StatusProto")
PredictRequest = _serving("PredictRequest")
PredictResponse = _serving("PredictResponse")
Input = _serving("Input")
ClassificationRequest = _serving("ClassificationRequest")
ClassificationResponse = _serving("ClassificationResponse")
ClassificationResult = _serving("ClassificationResult")
RegressionRequest = _serving("RegressionRequest")
RegressionResponse = _serving("RegressionResponse")
RegressionResult = _serving("RegressionResult")
MultiInferenceRequest = _serving("MultiInferenceRequest")
MultiInferenceResponse = _serving("MultiInferenceResponse")
SignatureDefMap = _serving("SignatureDefMap")
GetModelMetadataRequest = _serving("GetModelMetadataRequest")
GetModelMetadataResponse = _serving("GetModelMetadataResponse")
GetModelStatusRequest = _serving("GetModelStatusRequest")
GetModelStatusResponse = _serving("GetModelStatusResponse")
ModelVersionStatus = _serving("ModelVersionStatus")
ReloadConfigRequest = _serving("ReloadConfigRequest")
ReloadConfigResponse = _serving("ReloadConfigResponse")
PredictionLog = _serving("PredictionLog")
# tensorflow_serving/config
ModelServerConfig = _serving("ModelServerConfig")
BatchingParameters = _serving("BatchingParameters")
MonitoringConfig = _serving("MonitoringConfig")
# TensorFlow's profiler service
ProfileRequest = _tf("ProfileRequest")
ProfileResponse = _tf("ProfileResponse")
TerminateRequest = _tf("TerminateRequest")
TerminateResponse = _tf("TerminateResponse")
# grpc.health.v1
HealthCheckRequest = message_class("grpc.health.v1.HealthCheckRequest")
HealthCheckResponse = message_class("grpc.health.v1.HealthCheckResponse")

# gRPC services: method -> (request class, response class); paths are /<service>/<method>.
PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"
HEALTH_SERVICE = "grpc.health.v1.Health"
PROFILER_SERVICE = "tensorflow.ProfilerService"
SERVICES: dict[str, dict[str, tuple[Any, Any]]] = {
    PREDICTION_SERVICE: {
        "Classify": (ClassificationRequest, ClassificationResponse),
        "Regress": (RegressionRequest, RegressionResponse),
        "Predict": (PredictRequest, PredictResponse),
        "MultiInference": (MultiInferenceRequest, MultiInferenceResponse),
        "GetModelMetadata": (GetModelMetadataRequest, GetModelMetadataResponse),
    },
    MODEL_SERVICE: {
        "GetModelStatus": (GetModelStatusRequest, GetModelStatusResponse),
        "HandleReloadConfigRequest": (ReloadConfigRequest, ReloadConfigResponse),
    },
    PROFILER_SERVICE: {
        "Profile": (ProfileRequest, ProfileResponse),
        "Terminate": (TerminateRequest, TerminateResponse),
    },
    HEALTH_SERVICE: {
        "Check": (HealthCheckRequest, HealthCheckResponse),
        "Watch": (HealthCheckRequest, HealthCheckResponse),  # server-streaming
    },
}
