"""Python clients for TF Serving: `GrpcClient` (official stubs) and `RestClient` (requests).

Both have the same API and work against any TF Serving endpoint, ours or the official
container. Every call has a deadline (`timeout`, seconds, covering retries); failures
that mean "not reachable right now" (gRPC UNAVAILABLE, HTTP 503, connection refused or
reset) are retried with exponential backoff and jitter inside that deadline, anything
else (a bad request, a missing model) fails at once. Every failure is a `ServingError`
carrying the canonical code, the HTTP status (REST) and TF Serving's message.

    with GrpcClient("localhost:8500", "fashion_mnist") as client:
        client.wait_until_available(60)
        prediction = client.predict(images)  # uint8 [N, 28, 28]
        prediction.class_ids, prediction.probabilities, prediction.model_version
"""

from __future__ import annotations

import base64
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import numpy as np
import requests
import tensorflow as tf
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
from fmnist.serving.status import HTTP_STATUS

T = TypeVar("T")
DEFAULT_MAX_MESSAGE_BYTES = 64 << 20  # gRPC's own default (4 MiB) is too small for batches
RETRYABLE_CODES = frozenset({"UNAVAILABLE"})
_CODE_BY_HTTP = {status: code.name for code, status in reversed(list(HTTP_STATUS.items()))}
_CODE_BY_HTTP.update({400: "INVALID_ARGUMENT", 409: "ABORTED", 500: "INTERNAL"})


class ServingError(UserError):
    """A TF Serving request failed: canonical `code`, `http_status` (REST), `message`."""

    def __init__(self, code: str, message: str, *, where: str, http_status: int | None = None):
        self.code = code
        self.message = message
        self.http_status = http_status
        self.where = where
        status = f", HTTP {http_status}" if http_status else ""
        super().__init__(f"{where}: {code}{status}: {message}")

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE_CODES


@dataclass
class Prediction:
    """Class ids int64 [N], probabilities float32 [N, classes], and the version that answered."""

    class_ids: np.ndarray
    probabilities: np.ndarray
    model_version: int | None


def check_images(images: Any) -> np.ndarray:
    """uint8 [N, 28, 28] or [N, 28, 28, 1] -> uint8 [N, 28, 28]; anything else is a UserError."""
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise UserError(
            f"images must be uint8 [N, 28, 28] or [N, 28, 28, 1], got {images.dtype} "
            f"{list(images.shape)}"
        )
    if len(images) == 0:
        raise UserError("no images to send")
    return np.ascontiguousarray(images)


class _Client:
    """What both clients share: batching, deadlines, retries, waiting for a model."""

    where: str

    def __init__(
        self,
        model_name: str,
        *,
        timeout: float = 30.0,
        retries: int = 8,
        backoff: float = 0.1,
        max_backoff: float = 2.0,
        batch_size: int = 256,
    ) -> None:
        if timeout <= 0 or batch_size < 1 or retries < 0:
            raise UserError("timeout must be > 0, batch_size >= 1 and retries >= 0")
        self.model_name = model_name
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.batch_size = batch_size

    # --- the API ------------------------------------------------------------------------

    def predict(
        self,
        images: Any,
        *,
        version: int | None = None,
        label: str | None = None,
        signature: str = "serving_default",
    ) -> Prediction:
        """Class ids and probabilities for uint8 images, sent in batches of `batch_size`."""
        images = check_images(images)
        probabilities, class_ids, versions = [], [], set()
        for start in range(0, len(images), self.batch_size):
            outputs, answered = self.predict_raw(
                {"images": images[start : start + self.batch_size]},
                version=version,
                label=label,
                signature=signature,
            )
            if "probabilities" not in outputs:
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"signature {signature!r} has no 'probabilities' output "
                    f"(outputs: {', '.join(outputs)})",
                    where=self.where,
                )
            probs = np.asarray(outputs["probabilities"], dtype=np.float32)
            probabilities.append(probs)
            class_ids.append(
                np.asarray(outputs["class_ids"], np.int64)
                if "class_ids" in outputs
                else probs.argmax(1)
            )
            versions.add(answered)
        if len(versions) > 1:
            raise ServingError(
                "ABORTED",
                f"batches were answered by different versions {sorted(versions)} (the model "
                "changed during the request); pin --version or --label",
                where=self.where,
            )
        return Prediction(np.concatenate(class_ids), np.concatenate(probabilities), versions.pop())

    def predict_raw(
        self,
        inputs: dict[str, np.ndarray],
        *,
        version: int | None = None,
        label: str | None = None,
        signature: str = "serving_default",
    ) -> tuple[dict[str, np.ndarray], int | None]:
        """One Predict call with named input tensors; the outputs and the answering version."""
        raise NotImplementedError

    def metadata(self, *, version: int | None = None, label: str | None = None) -> dict:
        """The model's metadata (model_spec and signature_def) as TF Serving's JSON."""
        raise NotImplementedError

    def status(self, *, version: int | None = None, label: str | None = None) -> list[dict]:
        """[{version, state, error_code, error_message}] for the model's versions."""
        raise NotImplementedError

    def wait_until_available(
        self, timeout: float = 60.0, *, version: int | None = None, label: str | None = None
    ) -> int:
        """Poll the model status until a version is AVAILABLE; return that version."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        delay = self.backoff
        while True:
            try:
                available = [
                    s["version"]
                    for s in self._once(lambda: self.status(version=version, label=label))
                    if s["state"] == "AVAILABLE"
                ]
                if available:
                    return max(available)
                last = "no version is AVAILABLE yet"
            except ServingError as err:
                if err.code not in ("UNAVAILABLE", "NOT_FOUND", "DEADLINE_EXCEEDED"):
                    raise
                last = err.message
            if time.monotonic() + delay > deadline:
                raise ServingError(
                    "DEADLINE_EXCEEDED",
                    f"model {self._describe(version, label)} not AVAILABLE within "
                    f"{timeout:g} s (last: {last})",
                    where=self.where,
                )
            time.sleep(delay)
            delay = min(delay * 2, self.max_backoff)

    def close(self) -> None:
        """Release connections."""

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- retries within the deadline ----------------------------------------------------

    def _call(self, attempt: Callable[[float], T]) -> T:
        """Run `attempt(seconds_left)`, retrying retryable failures until the deadline."""
        deadline = time.monotonic() + self.timeout
        delay, tries = self.backoff, 0
        while True:
            tries += 1
            try:
                return attempt(max(deadline - time.monotonic(), 0.001))
            except ServingError as err:
                left = deadline - time.monotonic()
                if not err.retryable:
                    raise
                if tries > self.retries or left <= 0:
                    raise ServingError(
                        err.code,
                        f"gave up after {tries} attempt(s) in {self.timeout - left:.1f} s: "
                        f"{err.message}",
                        where=self.where,
                        http_status=err.http_status,
                    ) from None
                time.sleep(min(delay * random.uniform(0.5, 1.0), max(left, 0)))
                delay = min(delay * 2, self.max_backoff)

    def _once(self, call: Callable[[], T]) -> T:
        """A call without retries (for polling loops that do their own)."""
        retries, self.retries = self.retries, 0
        try:
            return call()
        finally:
            self.retries = retries

    def _describe(self, version: int | None, label: str | None) -> str:
        if version is not None:
            return f"{self.model_name!r} version {version}"
        if label is not None:
            return f"{self.model_name!r} label {label!r}"
        return repr(self.model_name)


class GrpcClient(_Client):
    """TF Serving's gRPC PredictionService and ModelService through the official stubs."""

    def __init__(
        self,
        target: str,
        model_name: str,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        **options: Any,
    ) -> None:
        super().__init__(model_name, **options)
        self.target = target
        self.where = f"TF Serving gRPC {target}"
        self._channel = grpc.insecure_channel(
            target,
            options=[
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.max_receive_message_length", max_message_bytes),
            ],
        )
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def _spec(
        self, version: int | None, label: str | None, signature: str | None = None
    ) -> model_pb2.ModelSpec:
        if version is not None and label is not None:
            raise UserError("give a version or a label, not both")
        spec = model_pb2.ModelSpec(name=self.model_name)
        if signature:
            spec.signature_name = signature
        if version is not None:
            spec.version.value = version
        elif label is not None:
            spec.version_label = label
        return spec

    def _rpc(self, method: Callable[..., T], request: Any) -> T:
        def attempt(seconds: float) -> T:
            try:
                return method(request, timeout=seconds)
            except grpc.RpcError as err:
                raise ServingError(err.code().name, err.details() or "", where=self.where) from None

        return self._call(attempt)

    def predict_raw(self, inputs, *, version=None, label=None, signature="serving_default"):
        request = predict_pb2.PredictRequest(model_spec=self._spec(version, label, signature))
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(np.asarray(value)))
        response = self._rpc(self._predict.Predict, request)
        outputs = {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
        answered = (
            response.model_spec.version.value if response.model_spec.HasField("version") else None
        )
        return outputs, answered

    def metadata(self, *, version=None, label=None):
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=self._spec(version, label), metadata_field=["signature_def"]
        )
        response = self._rpc(self._predict.GetModelMetadata, request)
        return json_format.MessageToDict(response)

    def status(self, *, version=None, label=None):
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=self._spec(version, label))
        response = self._rpc(self._models.GetModelStatus, request)
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


class RestClient(_Client):
    """TF Serving's REST API (`/v1/models/...`) over a pooled `requests.Session`."""

    def __init__(self, url: str, model_name: str, **options: Any) -> None:
        super().__init__(model_name, **options)
        if not url.startswith(("http://", "https://")):
            url = "http://" + url
        self.url = url.rstrip("/")
        self.where = f"TF Serving REST {self.url}"
        self._session = requests.Session()

    def _path(self, version: int | None, label: str | None) -> str:
        if version is not None and label is not None:
            raise UserError("give a version or a label, not both")
        path = f"{self.url}/v1/models/{self.model_name}"
        if version is not None:
            return f"{path}/versions/{version}"
        if label is not None:
            return f"{path}/labels/{label}"
        return path

    def _request(self, method: str, url: str, body: dict | None = None) -> dict:
        def attempt(seconds: float) -> dict:
            try:
                response = self._session.request(method, url, json=body, timeout=seconds)
            except requests.Timeout as err:
                raise ServingError("DEADLINE_EXCEEDED", str(err), where=self.where) from None
            except requests.ConnectionError as err:
                raise ServingError("UNAVAILABLE", _reason(err), where=self.where) from None
            try:
                payload = response.json()  # Python's json reads TF Serving's NaN/Infinity
            except ValueError:
                payload = {"error": response.text.strip()[:200] or response.reason}
            if response.status_code != 200:
                message = payload.get("error", response.reason) if isinstance(payload, dict) else ""
                raise ServingError(
                    _CODE_BY_HTTP.get(response.status_code, "UNKNOWN"),
                    str(message),
                    where=self.where,
                    http_status=response.status_code,
                )
            return payload

        return self._call(attempt)

    def predict_raw(self, inputs, *, version=None, label=None, signature="serving_default"):
        # REST answers carry neither the version nor, for one output, its name: the metadata
        # of the same path says which version serves it and what the outputs are called.
        metadata = self.metadata(version=version, label=label)
        spec = metadata.get("model_spec", {})
        answered = int(spec["version"]) if spec.get("version") else version
        signatures = metadata.get("metadata", {}).get("signature_def", {}).get("signature_def", {})
        output_names = list(signatures.get(signature, {}).get("outputs", {}))
        body = {
            "signature_name": signature,
            "inputs": {name: _to_json(np.asarray(value)) for name, value in inputs.items()},
        }
        payload = self._request("POST", f"{self._path(version, label)}:predict", body)
        return _outputs_from_json(payload, output_names), answered

    def metadata(self, *, version=None, label=None):
        return self._request("GET", f"{self._path(version, label)}/metadata")

    def status(self, *, version=None, label=None):
        payload = self._request("GET", self._path(version, label))
        return [
            {
                "version": int(s["version"]),
                "state": s["state"],
                "error_code": s.get("status", {}).get("error_code", "OK"),
                "error_message": s.get("status", {}).get("error_message", ""),
            }
            for s in payload.get("model_version_status", [])
        ]

    def close(self) -> None:
        self._session.close()


def _reason(err: requests.ConnectionError) -> str:
    """The innermost cause of a connection error, e.g. 'Connection refused'."""
    text = str(err)
    for marker in ("Connection refused", "Connection reset", "Name or service not known"):
        if marker in text:
            return marker
    return text[-200:]


def _to_json(value: np.ndarray) -> Any:
    """A tensor in TF Serving's JSON: nested lists; bytes as {"b64": ...}."""
    if value.dtype.kind in "SO":
        return np.vectorize(
            lambda b: {"b64": base64.b64encode(b).decode("ascii")}, otypes=[object]
        )(value).tolist()
    return value.tolist()


def _from_json(value: Any) -> np.ndarray:
    """TF Serving's JSON tensor (b64 objects decoded to bytes) as a numpy array."""

    def decode(item: Any) -> Any:
        if isinstance(item, dict) and set(item) == {"b64"}:
            return base64.b64decode(item["b64"])
        if isinstance(item, list):
            return [decode(x) for x in item]
        return item

    return np.asarray(decode(value))


def _outputs_from_json(payload: dict, output_names: list[str]) -> dict[str, np.ndarray]:
    """Columnar `outputs` or row `predictions`, each a bare tensor (one output: named from
    the signature) or named tensors -> {output name: array}."""
    if "outputs" in payload:
        outputs = payload["outputs"]
        if isinstance(outputs, dict):
            return {name: _from_json(value) for name, value in outputs.items()}
    elif "predictions" in payload:
        outputs = payload["predictions"]
        if outputs and isinstance(outputs[0], dict):
            return {name: _from_json([row[name] for row in outputs]) for name in outputs[0]}
    else:
        raise ServingError("INTERNAL", "answer has neither outputs nor predictions", where="REST")
    name = output_names[0] if len(output_names) == 1 else "outputs"
    return {name: _from_json(outputs)}
