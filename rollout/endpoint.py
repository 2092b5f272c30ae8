"""Where replay sends logged requests: any TF Serving endpoint (ours or the official
server) over gRPC or REST, through the project's clients, for one model, pinned to a
version or a label or unpinned.

Over gRPC a logged request goes as it was logged (its bytes, output filter included), only
its model spec rewritten; over REST it is translated to TF Serving's JSON (REST has no
MultiInference, and its answers carry no dtypes: they take the logged answer's).
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from fmnist.rollout.answers import NotComparable, Rows, predict_rows, response_rows
from fmnist.serving.client import GrpcClient, RestClient, ServingError
from fmnist.serving.wire import messages as pb
from fmnist.serving.wire import tensor_proto
from fmnist.serving.wire.json_tensors import request_json, response_array
from fmnist.serving.wire.status import StatusError

# Answers that mean the target is not there (no server, no such model or version): replay
# stops and says it could not check; any other error is the answer to that one request.
FATAL_CODES = frozenset({"UNAVAILABLE", "NOT_FOUND", "UNAUTHENTICATED", "PERMISSION_DENIED"})


class NotOverThisApi(Exception):
    """The API cannot carry this request (MultiInference over REST)."""


class Endpoint:
    """One model at a TF Serving endpoint. `output` names the Predict output holding class
    scores; `quantization` dequantizes int8 scores (default: TFLite's softmax constants)."""

    def __init__(
        self,
        client: GrpcClient | RestClient,
        model_name: str,
        *,
        output: str | None = None,
        quantization: tuple[float, int] | None = None,
    ) -> None:
        self.client = client
        self.model_name = model_name
        self.output = output
        self.quantization = quantization
        self.grpc = isinstance(client, GrpcClient)

    @property
    def api(self) -> str:
        return self.client.api

    @property
    def address(self) -> str:
        return self.client.endpoint

    def predict(
        self,
        inputs: dict[str, np.ndarray],
        signature: str,
        *,
        version: int | None = None,
        label: str | None = None,
        dtypes: dict[str, np.dtype] | None = None,
    ) -> tuple[Rows, int | None]:
        """A Predict of named input arrays: the answer's rows and the version that answered
        (None when the API does not say). `dtypes` types REST's untyped outputs."""
        if self.grpc:
            request = pb.PredictRequest()
            self._spec(request.model_spec, version, label, signature)
            for name, array in inputs.items():
                request.inputs[name].CopyFrom(tensor_proto.to_tensor_proto(array))
            response = self.client.call("Predict", request)
            return response_rows("Predict", response, self.output, self.quantization)[0], (
                _version(response.model_spec)
            )
        body = {
            "signature_name": signature,
            "inputs": {name: request_json(array) for name, array in inputs.items()},
        }
        payload = self.client.post("predict", body, version=version, label=label)
        outputs = _rest_outputs(payload, self.output or next(iter(dtypes or {}), "outputs"))
        for name, dtype in (dtypes or {}).items():
            if name in outputs and outputs[name].dtype != dtype:
                outputs[name] = outputs[name].astype(dtype)
        return predict_rows(outputs, self.output, self.quantization), version

    def send(
        self, method: str, request: Any, *, version: int | None = None, label: str | None = None
    ) -> tuple[list[Rows], int | None]:
        """A logged request, to this model (and version or label): its answer's rows (one
        per MultiInference task) and the version that answered, if the API says."""
        if self.grpc:
            request = type(request).FromString(request.SerializeToString())
            specs = (
                [t.model_spec for t in request.tasks]
                if method == "MultiInference"
                else [request.model_spec]
            )
            for spec in specs:
                self._spec(spec, version, label, spec.signature_name)
            response = self.client.call(method, request)
            spec = (
                response.results[0].model_spec
                if method == "MultiInference" and (response.results)
                else getattr(response, "model_spec", None)
            )
            rows = response_rows(method, response, self.output, self.quantization)
            return rows, _version(spec) if spec is not None else None
        if method == "Predict":
            inputs = decode_inputs(request)
            rows, answered = self.predict(
                inputs,
                request.model_spec.signature_name,
                version=version,
                label=label,
            )
            return [rows], answered
        if method == "MultiInference":
            raise NotOverThisApi("TF Serving's REST API has no MultiInference (replay over gRPC)")
        body = {"signature_name": request.model_spec.signature_name, **_examples_json(request)}
        payload = self.client.post(method.lower(), body, version=version, label=label)
        return [_rest_result_rows(method, payload)], version

    def _spec(self, spec: Any, version: int | None, label: str | None, signature: str) -> None:
        """Rewrite a logged request's model spec for this target."""
        spec.CopyFrom(self.client.model_spec(version, label, signature or None))
        spec.name = self.model_name


def decode_inputs(request: Any) -> dict[str, np.ndarray]:
    """A logged PredictRequest's inputs as arrays (NotComparable if one cannot be read)."""
    try:
        return {name: tensor_proto.to_ndarray(t) for name, t in request.inputs.items()}
    except StatusError as err:
        raise NotComparable(f"unreadable input tensor: {err.message}") from None


def _version(spec: Any) -> int | None:
    return int(spec.version.value) if spec.HasField("version") else None


def _rest_outputs(payload: Any, bare_name: str) -> dict[str, np.ndarray]:
    """Columnar `outputs` of a REST Predict answer; a single-output signature's bare tensor
    is named `bare_name`."""
    if not isinstance(payload, dict) or "outputs" not in payload:
        raise ServingError("INTERNAL", "the REST answer has no 'outputs'")
    outputs = payload["outputs"]
    if isinstance(outputs, dict) and "b64" not in outputs:
        return {name: response_array(value) for name, value in outputs.items()}
    return {bare_name: response_array(outputs)}


def _examples_json(request: Any) -> dict[str, Any]:
    """A Classify/Regress request's tf.Examples in TF Serving's REST form."""
    kind = request.input.WhichOneof("kind")
    if kind == "example_list":
        return {"examples": [_example_json(e) for e in request.input.example_list.examples]}
    if kind == "example_list_with_context":
        both = request.input.example_list_with_context
        return {
            "context": _example_json(both.context),
            "examples": [_example_json(e) for e in both.examples],
        }
    return {"examples": []}


def _example_json(example: Any) -> dict[str, Any]:
    features = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        if kind == "bytes_list":
            values: list[Any] = [
                {"b64": base64.b64encode(v).decode()} for v in feature.bytes_list.value
            ]
        elif kind == "float_list":
            values = [float(v) for v in feature.float_list.value]
        elif kind == "int64_list":
            values = [int(v) for v in feature.int64_list.value]
        else:
            values = []
        features[name] = values
    return features


def _rest_result_rows(method: str, payload: Any) -> Rows:
    results = payload.get("results") if isinstance(payload, dict) else None
    if not isinstance(results, list):
        raise ServingError("INTERNAL", f"the REST {method.lower()} answer has no 'results'")
    if method == "Regress":
        return Rows(values=np.asarray(results, np.float64).reshape(-1))
    return Rows(
        classes=[
            {str(label) or str(i): float(score) for i, (label, score) in enumerate(example)}
            for example in results
        ]
    )
