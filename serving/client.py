"""Python clients for TF Serving: `GrpcClient` (official stubs) and `RestClient` (requests).

Both have the same API and work against any TF Serving endpoint, ours or the official
container. Every call has a deadline (`timeout`, seconds, covering its retries); failures
that mean "not reachable right now" (gRPC UNAVAILABLE, HTTP 503, connection refused or
reset) are retried with exponential backoff and jitter inside that deadline, anything
else (a bad request, a missing model) fails at once. Every failure is a `ServingError`
carrying the canonical code, the HTTP status (REST) and TF Serving's message.

    with GrpcClient("localhost:8500", "fashion_mnist") as client:
        client.wait_until_available(60)
        prediction = client.predict(images)  # uint8 [N, 28, 28]
        prediction.class_ids, prediction.probabilities, prediction.model_version

Tensors are converted with the server's own code (`fmnist.serving.tensors`), numbers as
`tensor_content`. The stubs' protos live in the `tensorflow` package, so importing them
loads it.
"""

from __future__ import annotations

import base64
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import grpc
import numpy as np
import requests
from google.protobuf import json_format
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from fmnist.errors import UserError
from fmnist.serving import tensors
from fmnist.serving.status import ServingError as StatusError

T = TypeVar("T")
DEFAULT_MAX_MESSAGE_BYTES = 64 << 20  # gRPC's own default (4 MiB) is too small for batches
RETRYABLE_CODES = frozenset({"UNAVAILABLE"})
_UNPINNED_ATTEMPTS = 3  # an unpinned predict during which the model changed is sent again
# TF Serving's HTTP statuses (model_servers/http_server.cc) back to canonical codes.
CODE_BY_HTTP = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    413: "RESOURCE_EXHAUSTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class ServingError(UserError):
    """A TF Serving request failed: canonical `code`, `http_status` (REST), `message`."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        where: str = "TF Serving",
        http_status: int | None = None,
        summary: str | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.http_status = http_status
        self.where = where
        status = f" (HTTP {http_status})" if http_status else ""
        line = summary or f"{where}: {code}{status}: {message}"
        super().__init__(" ".join(line.split()))  # one line, whatever the server said

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE_CODES


class _ModelChanged(ServingError):
    """The batches of one predict were answered by different versions."""


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

    endpoint: str  # host:port or URL, for messages
    api: str  # "gRPC" or "REST"

    def __init__(
        self,
        model_name: str,
        *,
        timeout: float = 30.0,
        retries: int | None = None,
        backoff: float = 0.1,
        max_backoff: float = 2.0,
        batch_size: int = 256,
    ) -> None:
        if not timeout > 0 or batch_size < 1 or (retries or 0) < 0 or not backoff >= 0:
            raise UserError("timeout must be > 0, batch_size >= 1, retries and backoff >= 0")
        self.model_name = model_name
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max(max_backoff, backoff)
        self.batch_size = batch_size

    @property
    def where(self) -> str:
        return f"TF Serving {self.api} {self.endpoint}"

    # --- the API ------------------------------------------------------------------------

    def predict(
        self,
        images: Any,
        *,
        version: int | None = None,
        label: str | None = None,
        signature: str = "serving_default",
        batch_size: int | None = None,
    ) -> Prediction:
        """Class ids and probabilities for uint8 images, sent in batches of `batch_size`."""
        images = check_images(images)
        _check_choice(version, label)
        for _ in range(_UNPINNED_ATTEMPTS - 1):
            try:
                return self._predict_batches(images, version, label, signature, batch_size)
            except _ModelChanged:  # unpinned, and a rollout happened between batches: resend
                pass
        return self._predict_batches(images, version, label, signature, batch_size)

    def _predict_batches(
        self,
        images: np.ndarray,
        version: int | None,
        label: str | None,
        signature: str,
        batch_size: int | None,
    ) -> Prediction:
        batch_size = batch_size or self.batch_size
        probabilities, class_ids, versions = [], [], set()
        for start in range(0, len(images), batch_size):
            outputs, answered = self._predict_batch(
                {"images": images[start : start + batch_size]}, version, label, signature
            )
            if "probabilities" not in outputs:
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"signature {signature!r} has no 'probabilities' output "
                    f"(outputs: {', '.join(outputs)})",
                    where=self._where(version, label),
                )
            probs = np.asarray(outputs["probabilities"], dtype=np.float32)
            probabilities.append(probs)
            ids = outputs.get("class_ids")
            class_ids.append(probs.argmax(1) if ids is None else np.asarray(ids, np.int64))
            versions.add(answered)
            if len(versions) > 1:
                raise _ModelChanged(
                    "ABORTED",
                    f"batches were answered by different versions {sorted(versions)} (the "
                    "model changed during the request); pin a version or a label",
                    where=self._where(version, label),
                )
        return Prediction(np.concatenate(class_ids), np.concatenate(probabilities), versions.pop())

    def predict_raw(
        self,
        inputs: dict[str, Any],
        *,
        version: int | None = None,
        label: str | None = None,
        signature: str = "serving_default",
    ) -> tuple[dict[str, np.ndarray], int | None]:
        """One Predict call with named input tensors; the outputs and the answering version."""
        _check_choice(version, label)
        return self._predict_batch(inputs, version, label, signature)

    def _predict_batch(
        self, inputs: dict[str, Any], version: int | None, label: str | None, signature: str
    ) -> tuple[dict[str, np.ndarray], int | None]:
        """One Predict call, exactly as asked: outputs, and the version if the answer says."""
        raise NotImplementedError

    def metadata(self, *, version: int | None = None, label: str | None = None) -> dict:
        """The model's metadata (model_spec and signature_def) as TF Serving's JSON."""
        raise NotImplementedError

    def status(self, *, version: int | None = None, label: str | None = None) -> list[dict]:
        """[{version, state, error_code, error_message}] for the model's versions."""
        return self._status(version, label, self.timeout, self.retries)

    def wait_until_available(
        self, timeout: float = 60.0, *, version: int | None = None, label: str | None = None
    ) -> int:
        """Poll the model status until a version is AVAILABLE; return that version."""
        start = time.monotonic()
        deadline = start + timeout
        last = "no answer yet"
        delay = self.backoff or 0.1
        while True:
            left = deadline - time.monotonic()
            try:
                states = self._status(version, label, max(min(self.timeout, left), 0.05), 0)
                available = [s["version"] for s in states if s["state"] == "AVAILABLE"]
                if available:
                    return max(available)
                last = "versions " + ", ".join(f"{s['version']} {s['state']}" for s in states)
            except ServingError as err:
                if err.code not in ("UNAVAILABLE", "NOT_FOUND", "DEADLINE_EXCEEDED"):
                    raise
                last = f"{err.code}: {err.message}"
            if time.monotonic() + delay > deadline:
                raise ServingError(
                    "DEADLINE_EXCEEDED",
                    f"not AVAILABLE within {timeout:g} s (last: {last})",
                    where=self._where(version, label),
                )
            time.sleep(delay)
            delay = min(delay * 2, self.max_backoff)

    def close(self) -> None:
        """Release connections."""

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- for subclasses -----------------------------------------------------------------

    def _status(
        self, version: int | None, label: str | None, timeout: float, retries: int
    ) -> list[dict]:
        raise NotImplementedError

    def _where(self, version: int | None, label: str | None) -> str:
        """'TF Serving gRPC host:port, model 'm' version 2': who failed, for messages."""
        model = f"model {self.model_name!r}"
        if version is not None:
            model += f" version {version}"
        elif label is not None:
            model += f" label {label!r}"
        return f"{self.where}, {model}"

    def _call(
        self,
        attempt: Callable[[float], T],
        where: str,
        timeout: float | None = None,
        retries: int | None = None,
    ) -> T:
        """Run `attempt(seconds_left)`, retrying retryable failures until the deadline (or
        `retries` retries, when set)."""
        timeout = self.timeout if timeout is None else timeout
        retries = self.retries if retries is None else retries
        retries = float("inf") if retries is None else retries
        start = time.monotonic()
        deadline = start + timeout
        delay, tries = self.backoff, 0
        while True:
            tries += 1
            try:
                return attempt(max(deadline - time.monotonic(), 0.001))
            except ServingError as err:
                if not err.retryable:
                    message = err.message
                    if err.code == "DEADLINE_EXCEEDED":
                        message += f" (deadline {timeout:g} s)"
                    raise ServingError(
                        err.code, message, where=where, http_status=err.http_status
                    ) from None
                left = deadline - time.monotonic()
                pause = min(delay * random.uniform(0.5, 1.0), max(left, 0.0))
                if tries > retries or left <= pause:
                    spent = time.monotonic() - start
                    summary = (
                        f"could not reach TF Serving at {self.endpoint} ({self.api}, "
                        f"{where.split(', ', 1)[-1]}) after {tries} attempt"
                        f"{'s' if tries > 1 else ''} in {spent:.1f} s: {err.code}"
                        f"{f' (HTTP {err.http_status})' if err.http_status else ''}: "
                        f"{err.message}"
                    )
                    raise ServingError(
                        err.code,
                        err.message,
                        where=where,
                        http_status=err.http_status,
                        summary=summary,
                    ) from None
                time.sleep(pause)
                delay = min(delay * 2, self.max_backoff)


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
            request.inputs[name].CopyFrom(to_tensor_proto(value))
        response = self._rpc(self._predict.Predict, request, self._where(version, label))
        outputs = {name: from_tensor_proto(proto) for name, proto in response.outputs.items()}
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


class RestClient(_Client):
    """TF Serving's REST API (`/v1/models/...`) over a pooled `requests.Session`.

    Requests use the row format (`instances`) when every input has the same batch
    dimension, else the columnar one (`inputs`); `columnar=True` always uses the latter.
    """

    api = "REST"

    def __init__(
        self, url: str, model_name: str, *, columnar: bool = False, **options: Any
    ) -> None:
        super().__init__(model_name, **options)
        if not url.startswith(("http://", "https://")):
            url = "http://" + url
        self.url = self.endpoint = _check_url(url.rstrip("/"))
        self.columnar = columnar
        self._session = requests.Session()
        self._output_names: dict[tuple[int | None, str | None, str], list[str]] = {}
        self._lock = threading.Lock()

    def _path(self, version: int | None, label: str | None) -> str:
        _check_choice(version, label)
        path = f"{self.url}/v1/models/{quote(self.model_name, safe='')}"
        if version is not None:
            return f"{path}/versions/{int(version)}"
        if label is not None:
            return f"{path}/labels/{quote(label, safe='')}"
        return path

    def _request(
        self,
        method: str,
        url: str,
        where: str,
        body: dict | None = None,
        timeout: float | None = None,
        retries: int | None = None,
    ) -> dict:
        # TF Serving reads NaN/Infinity, which requests' own JSON encoding refuses.
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"} if data else None

        def attempt(seconds: float) -> dict:
            try:
                response = self._session.request(
                    method, url, data=data, headers=headers, timeout=seconds
                )
            except requests.ConnectTimeout as err:  # nobody answered the connection: retry
                raise ServingError("UNAVAILABLE", _reason(err)) from None
            except requests.Timeout as err:
                raise ServingError("DEADLINE_EXCEEDED", _reason(err)) from None
            except requests.exceptions.SSLError as err:  # not transient: do not retry
                raise ServingError("UNAUTHENTICATED", _reason(err)) from None
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as err:
                raise ServingError("UNAVAILABLE", _reason(err)) from None
            except requests.RequestException as err:  # e.g. an invalid URL
                raise ServingError("INVALID_ARGUMENT", _reason(err)) from None
            try:
                payload = response.json()  # Python's json reads TF Serving's NaN/Infinity
            except ValueError:
                payload = {"error": response.text.strip()[:200] or response.reason}
            if response.status_code != 200:
                message = payload.get("error") if isinstance(payload, dict) else None
                raise ServingError(
                    CODE_BY_HTTP.get(response.status_code, "UNKNOWN"),
                    str(message or response.reason),
                    http_status=response.status_code,
                )
            return payload

        return self._call(attempt, where, timeout, retries)

    # REST answers do not say which version answered. An unpinned request stays unpinned (a
    # version learned from metadata may retire before the request arrives: pinning it would
    # turn a rollout into NOT_FOUND); the version that answered is the one the model's
    # metadata names both before and after the batches (versions only move forward), and a
    # request during which the model changed is sent again.

    def predict(
        self, images, *, version=None, label=None, signature="serving_default", batch_size=None
    ):
        images = check_images(images)
        _check_choice(version, label)
        if version is not None:  # pinned: the version that answers is the one asked for
            return self._predict_batches(images, version, None, signature, batch_size)
        seen = []
        for _ in range(_UNPINNED_ATTEMPTS):
            before = self._served_version(label, signature)
            prediction = self._predict_batches(images, None, label, signature, batch_size)
            after = self._served_version(label, signature)
            if before == after:
                prediction.model_version = after
                return prediction
            seen.append(f"{before} -> {after}")
        raise ServingError(
            "ABORTED",
            f"the model changed during each of {_UNPINNED_ATTEMPTS} attempts (versions "
            f"{', '.join(seen)}); pin a version or a label",
            where=self._where(None, label),
        )

    def predict_raw(self, inputs, *, version=None, label=None, signature="serving_default"):
        _check_choice(version, label)
        if version is not None:
            return self._predict_batch(inputs, version, None, signature)[0], version
        before = self._served_version(label, signature)
        outputs, _ = self._predict_batch(inputs, None, label, signature)
        after = self._served_version(label, signature)
        return outputs, (after if before == after else None)

    def _served_version(self, label: str | None, signature: str) -> int | None:
        """The version the unpinned (or label) path serves now, from its metadata; the
        signature's output names are refreshed from the same answer."""
        metadata = self.metadata(label=label)
        spec = metadata.get("model_spec", {})
        self._remember_outputs(None, label, signature, metadata)
        return int(spec["version"]) if spec.get("version") else None

    def _predict_batch(self, inputs, version, label, signature):
        where = self._where(version, label)
        arrays = {name: np.asarray(value) for name, value in inputs.items()}
        payload = self._request(
            "POST", f"{self._path(version, label)}:predict", where, self._body(arrays, signature)
        )
        outputs, bare = _outputs_from_json(payload, where)
        if bare is not None:  # a single-output signature's bare tensor: name it
            names = self._output_names.get((version, label, signature))
            if names is None:
                metadata = self.metadata(version=version, label=label)
                names = self._remember_outputs(version, label, signature, metadata)
            outputs = {names[0] if len(names) == 1 else "outputs": bare}
        return outputs, version

    def _body(self, arrays: dict[str, np.ndarray], signature: str) -> dict:
        """Row format when every input has the same batch size, else columnar."""
        sizes = {a.shape[0] if a.ndim else None for a in arrays.values()}
        if self.columnar or len(sizes) != 1 or None in sizes:
            return {
                "signature_name": signature,
                "inputs": {name: _to_json(a) for name, a in arrays.items()},
            }
        columns = {name: _to_json(a) for name, a in arrays.items()}
        rows = [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]
        return {"signature_name": signature, "instances": rows}

    def _remember_outputs(
        self, version: int | None, label: str | None, signature: str, metadata: dict
    ) -> list[str]:
        """Cache a signature's output names for requests to (version, label): the unpinned
        entry (None, None) follows whatever version serves, refreshed by every metadata call."""
        signatures = metadata.get("metadata", {}).get("signature_def", {})
        names = sorted(signatures.get("signature_def", {}).get(signature, {}).get("outputs", {}))
        with self._lock:
            self._output_names[(version, label, signature)] = names
        return names

    def metadata(self, *, version=None, label=None):
        url = f"{self._path(version, label)}/metadata"
        return self._request("GET", url, self._where(version, label))

    def _status(self, version, label, timeout, retries):
        where = self._where(version, label)
        payload = self._request("GET", self._path(version, label), where, None, timeout, retries)
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


def _check_choice(version: int | None, label: str | None) -> None:
    if version is not None and label is not None:
        raise UserError("give a version or a label, not both")


def _check_url(url: str) -> str:
    """`url` if it names a host and a valid port, else a UserError saying what is wrong."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError as err:
        raise UserError(f"invalid TF Serving REST URL {url!r}: {err}") from None
    if not parts.hostname or parts.query or parts.fragment:
        raise UserError(
            f"invalid TF Serving REST URL {url!r}: expected http://HOST:PORT[/PREFIX], e.g. "
            "http://localhost:8501"
        )
    return url


def _reason(err: Exception) -> str:
    """The innermost cause of a requests error, e.g. 'Connection refused'."""
    text = str(err)
    for marker in ("Connection refused", "Connection reset", "Name or service not known"):
        if marker in text:
            return marker
    if isinstance(err, requests.Timeout):
        return "no answer within the deadline"
    return text[-200:]


# --- gRPC tensors: numpy <-> TensorProto (the server's own conversions, serving.tensors) ---


def to_tensor_proto(value: Any) -> tensor_pb2.TensorProto:
    """A numpy array (numbers, bools, or bytes/str for DT_STRING) as a TensorProto; numbers
    travel as `tensor_content`, much faster to build and parse than the typed fields."""
    array = np.asarray(value)
    proto = tensor_pb2.TensorProto()
    try:
        dt = tensors.dtype_of(array)
    except StatusError as err:
        raise UserError(f"cannot send to TF Serving: {err.message}") from None
    if dt == types_pb2.DT_STRING:
        tensors.fill_tensor_proto(array, proto)
        return proto
    proto.dtype = dt
    proto.tensor_shape.dim.extend(
        tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in array.shape
    )
    proto.tensor_content = np.ascontiguousarray(array).tobytes()
    return proto


def from_tensor_proto(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """A TensorProto as numpy, from `tensor_content` or the typed `*_val` fields."""
    try:
        return tensors.to_ndarray(proto)
    except StatusError as err:
        raise UserError(f"TF Serving answered a tensor this client cannot read: {err}") from None


# --- REST tensors: numpy <-> TF Serving's JSON ---------------------------------------------


def _to_json(value: np.ndarray) -> Any:
    """A tensor in TF Serving's JSON: nested lists; bytes as {"b64": ...}."""
    if value.dtype.kind in "OS":
        return np.vectorize(
            lambda b: {"b64": base64.b64encode(b.encode() if isinstance(b, str) else b).decode()},
            otypes=[object],
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

    if _has_b64(value):
        return np.asarray(decode(value), dtype=object)
    return np.asarray(value)


def _has_b64(value: Any) -> bool:
    while isinstance(value, list) and value:
        value = value[0]
    return isinstance(value, dict)


def _outputs_from_json(payload: Any, where: str) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Columnar `outputs` or row `predictions` -> ({name: array}, None) for named tensors,
    or ({}, array) for the bare tensor of a single-output signature."""
    if isinstance(payload, dict) and "outputs" in payload:
        outputs = payload["outputs"]
        if isinstance(outputs, dict) and "b64" not in outputs:
            return {name: _from_json(value) for name, value in outputs.items()}, None
    elif isinstance(payload, dict) and "predictions" in payload:
        outputs = payload["predictions"]
        if outputs and isinstance(outputs[0], dict) and "b64" not in outputs[0]:
            names = list(outputs[0])
            return {name: _from_json([row[name] for row in outputs]) for name in names}, None
    else:
        raise ServingError(
            "INTERNAL", "answer has neither 'outputs' nor 'predictions'", where=where
        )
    return {}, _from_json(outputs)
