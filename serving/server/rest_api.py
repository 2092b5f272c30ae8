"""TF Serving's REST API as a function of (HTTP method, path, body) -> (HTTP status, JSON body).

URLs, request/response JSON and error bodies follow TF Serving's http_rest_api_handler
and json_tensor: row (`instances` -> `predictions`) and columnar (`inputs` -> `outputs`)
predict formats, `{"b64": ...}` binary values, classify/regress on JSON tf.Examples,
status and metadata as protobuf JSON, and `{"error": ...}` with a mapped HTTP status.
The HTTP transport lives in `http_server`, so this module is plain, testable logic. It
needs no TensorFlow (a TFLite-only install serves REST): models are read through their
plain-data `signatures`, and classify/regress build the project's own tf.Example messages.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote

import numpy as np

from fmnist.serving.server import rest_json
from fmnist.serving.server.metrics import Metrics, RequestRecord
from fmnist.serving.server.registry import Servable, ServableRegistry
from fmnist.serving.wire import json_fast, json_tensors
from fmnist.serving.wire.json_fast import NumericSpan
from fmnist.serving.wire.signature import DEFAULT_SIGNATURE
from fmnist.serving.wire.status import Code, StatusError, invalid_argument

_VERSION = r"(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
_POST_PATH = re.compile(rf"/v1/models/([^/:]+){_VERSION}:(classify|regress|predict)", re.I)
_GET_PATH = re.compile(rf"/v1/models(?:/([^/:]+))?{_VERSION}(?:/(metadata))?", re.I)
_INT64_MAX = 2**63 - 1


class RestApi:
    """Answers REST requests against the registry; never raises."""

    def __init__(self, registry: ServableRegistry, metrics: Metrics, method_check: bool = False):
        self.registry = registry
        self.metrics = metrics
        self.method_check = method_check

    def handle(
        self,
        http_method: str,
        path: str,
        body: bytes | bytearray,
        deadline: float | None = None,
    ) -> tuple[int, bytes]:
        """(HTTP status, JSON body); work stops with DEADLINE_EXCEEDED (504) after `deadline`
        (a `time.monotonic()` value), checked while decoding, running and encoding."""
        record = self.metrics.start("rest", "unknown")
        try:
            json_fast.check_deadline(deadline)
            payload = self._dispatch(http_method, path, body, record, deadline)
        except StatusError as err:
            self.metrics.finish(record, err.code.name)
            return err.http_status, _dump({"error": err.message})
        except RecursionError:
            self.metrics.finish(record, "INVALID_ARGUMENT")
            return 400, _dump({"error": "JSON Parse error: nesting too deep"})
        except Exception as err:  # a bug must not take the server down: report it as INTERNAL
            self.metrics.finish(record, "INTERNAL")
            return 500, _dump({"error": f"{type(err).__name__}: {err}"})
        self.metrics.finish(record, "OK")
        return 200, payload if isinstance(payload, bytes) else _dump(payload)

    def _dispatch(
        self,
        http_method: str,
        path: str,
        body: bytes | bytearray,
        record: RequestRecord,
        deadline: float | None,
    ) -> Any:
        malformed = invalid_argument(f"Malformed request: {http_method} {path}")
        pattern = {"POST": _POST_PATH, "GET": _GET_PATH}.get(http_method)
        match = pattern.fullmatch(path) if pattern else None
        if match is None:
            raise malformed
        name, version_text, label, action = match.groups()
        name = unquote(name) if name else ""
        label = unquote(label) if label is not None else None
        version = None
        if version_text is not None:
            version = int(version_text)
            if version > _INT64_MAX:
                raise invalid_argument(f"Failed to convert version: {version_text} to numeric.")
        record.method = (action or "status").lower()
        if name in self.registry.managers:
            record.model = name
        if http_method == "GET":
            if not name:
                raise invalid_argument("Missing model name in request.")
            if record.method == "metadata":
                with self._acquire(name, version, label, record) as servable:
                    return rest_json.metadata_json(servable)
            # As in TF Serving, a label does not narrow a status request.
            return rest_json.model_status_json(self.registry.status(name, version))
        doc = _parse_json(body, deadline, fast=record.method == "predict")
        signature_name = doc.get("signature_name", "")
        if not isinstance(signature_name, str):
            raise invalid_argument(
                "JSON Value: not formatted correctly. 'signature_name' key must be a string value."
            )
        if record.method == "predict":
            return self._predict(doc, name, version, label, signature_name, record, deadline)
        features = _examples(doc, record.method)
        with self._acquire(name, version, label, record) as servable:
            examples = _serialized_examples(features)
            if record.method == "classify":
                _, result = servable.model.classify(
                    signature_name, examples, self.method_check, deadline=deadline
                )
                return {"results": [_classes_json(c) for c in result.classifications]}
            _, result = servable.model.regress(
                signature_name, examples, self.method_check, deadline=deadline
            )
            values = np.array([r.value for r in result.regressions], dtype=np.float32)
            return {"results": json_tensors.to_json(values, "")}

    @contextmanager
    def _acquire(
        self, name: str, version: int | None, label: str | None, record: RequestRecord
    ) -> Iterator[Servable]:
        with self.registry.acquire(name, version, label) as servable:
            record.version = str(servable.version)
            yield servable

    def _predict(
        self,
        doc: dict[str, Any],
        name: str,
        version: int | None,
        label: str | None,
        signature_name: str,
        record: RequestRecord,
        deadline: float | None,
    ) -> bytes:
        with self._acquire(name, version, label, record) as servable:
            signature = _signature(servable, signature_name)
            if "instances" in doc and "inputs" in doc:
                raise invalid_argument(
                    "Not formatted correctly expecting only one of 'inputs' or 'instances' keys "
                    "to exist"
                )
            if "instances" in doc:
                inputs, row = _row_inputs(doc["instances"], signature.inputs, deadline), True
            elif "inputs" in doc:
                inputs = _columnar_inputs(doc["inputs"], signature.inputs, deadline)
                row = False
            else:
                raise invalid_argument("Missing 'inputs' or 'instances' key")
            _, outputs = servable.model.predict(signature_name, inputs, deadline=deadline)
        del inputs, doc  # the request's arrays are not needed while the response is written
        if row:
            return _row_outputs(outputs, deadline)
        return _columnar_outputs(outputs, deadline)


_dump = json_tensors.dump_json


def _parse_json(body: bytes | bytearray, deadline: float | None, fast: bool) -> dict[str, Any]:
    """The request document; `fast` leaves large numeric arrays as text (`NumericSpan`)."""
    if not body or body.isspace():  # (no stripped copy of a large body)
        raise invalid_argument("JSON Parse error: The document is empty")
    try:
        doc = json_fast.loads(body, deadline) if fast else json_fast.plain_loads(body)
    except ValueError as err:  # JSONDecodeError, bad UTF-8
        raise invalid_argument(f"JSON Parse error: {err}") from None
    if not isinstance(doc, dict):
        raise invalid_argument(f"JSON Value: {_short(doc)} Is not object")
    return doc


def _short(value: Any, limit: int = 80) -> str:
    if isinstance(value, NumericSpan):  # its text, as it came
        text = bytes(memoryview(value.data)[value.start : value.start + limit + 1]).decode()
    else:
        text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _signature(servable: Servable, signature_name: str):
    name = signature_name or DEFAULT_SIGNATURE
    signature = servable.model.signatures.get(name)
    if signature is None:
        raise invalid_argument(f'Serving signature name: "{name}" not found in signature def')
    if not signature.inputs:
        raise invalid_argument(f"Failed to get input map for signature: {name}")
    return signature


def _is_object(value: Any) -> bool:
    return isinstance(value, dict) and not json_tensors.is_b64(value)


def _row_inputs(instances: Any, infos, deadline: float | None) -> dict[str, np.ndarray]:
    """`instances`: a list with one item per batch row, plain values or {input: value} objects."""
    names = sorted(infos)
    if isinstance(instances, NumericSpan):  # a plain array of numbers, left as text
        if len(names) > 1:
            raise invalid_argument(
                "instances is a plain list, but expecting list of objects as multiple input "
                "tensors required as per tensorinfo_map"
            )
        array = _converted(instances, infos[names[0]].dtype, "'instances' list", deadline)
        if array.ndim == 0 or array.shape[0] == 0:
            raise invalid_argument("No values in 'instances' array")
        return {names[0]: array}
    if not isinstance(instances, list):
        raise invalid_argument("Expecting 'instances' to be an list/array")
    if not instances:
        raise invalid_argument("No values in 'instances' array")
    if not _is_object(instances[0]):
        if len(names) > 1:
            raise invalid_argument(
                "instances is a plain list, but expecting list of objects as multiple input "
                "tensors required as per tensorinfo_map"
            )
        for i, item in enumerate(instances):
            if _is_object(item):
                raise invalid_argument(
                    f"Expecting value/list but got object at item {i} of input list"
                )
        return {
            names[0]: _converted(instances, infos[names[0]].dtype, "'instances' list", deadline)
        }
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for i, item in enumerate(instances):
        if not _is_object(item):
            raise invalid_argument(f"Expecting object but got list at item {i} of input list")
        if sorted(item) != names:
            unknown = sorted(set(item) - set(names))
            if unknown:
                raise invalid_argument(
                    f"Failed to process element: {i} key: {unknown[0]} of 'instances' list. "
                    f"Error: JSON object: does not have named input: {unknown[0]}"
                )
            raise invalid_argument(
                f"Failed to process element: {i} of 'instances' list. JSON object keys must be "
                f"equal to: {','.join(names)}"
            )
        for name in names:
            columns[name].append(item[name])
    return {
        name: _converted(values, infos[name].dtype, f"'instances' key {name}", deadline)
        for name, values in columns.items()
    }


def _columnar_inputs(value: Any, infos, deadline: float | None) -> dict[str, np.ndarray]:
    """`inputs`: one value for a single-input signature, else an object of named values."""
    names = sorted(infos)
    if not _is_object(value):
        if len(names) > 1:
            raise invalid_argument(
                "inputs is a plain value/list, but expecting an object as multiple input tensors "
                "required as per tensorinfo_map"
            )
        return {names[0]: _converted(value, infos[names[0]].dtype, "'inputs'", deadline)}
    missing = [name for name in names if name not in value]
    if missing:
        raise invalid_argument(f"Missing named input: {missing[0]} in 'inputs' object.")
    return {
        name: _converted(value[name], infos[name].dtype, f"'inputs' key {name}", deadline)
        for name in names
    }


def _converted(value: Any, dt: int, where: str, deadline: float | None) -> np.ndarray:
    try:
        return json_tensors.from_json(value, dt, deadline)
    except StatusError as err:
        if err.code != Code.INVALID_ARGUMENT:
            raise
        raise invalid_argument(f"Failed to process {where}. Error: {err.message}") from None


def _row_outputs(outputs: dict[str, np.ndarray], deadline: float | None) -> bytes:
    batch = None
    for name, value in sorted(outputs.items()):
        if value.ndim == 0:
            raise invalid_argument(f"Tensor name: {name} has no shape information ")
        if batch is not None and value.shape[0] != batch:
            raise invalid_argument(
                f"Tensor name: {name} has inconsistent batch size: {value.shape[0]} "
                f"expecting: {batch}"
            )
        batch = value.shape[0]
    if len(outputs) == 1:
        ((name, value),) = outputs.items()
        parts = json_tensors.to_json_parts(value, name, deadline)
    else:
        parts = json_tensors.rows_json_parts(outputs, deadline)
    return b"".join([b'{"predictions":', *parts, b"}"])


def _columnar_outputs(outputs: dict[str, np.ndarray], deadline: float | None) -> bytes:
    if len(outputs) == 1:
        ((name, value),) = outputs.items()
        return b"".join([b'{"outputs":', *json_tensors.to_json_parts(value, name, deadline), b"}"])
    if not outputs:
        return b'{"outputs":{}}'
    parts = [b'{"outputs":{']
    for name, value in sorted(outputs.items()):
        parts += [_dump(name), b":", *json_tensors.to_json_parts(value, name, deadline), b","]
    parts[-1] = b"}}"
    return b"".join(parts)


def _classes_json(classifications) -> list[list[Any]]:
    scores = json_tensors.to_json(
        np.array([c.score for c in classifications.classes], np.float32), ""
    )
    return [[c.label, s] for c, s in zip(classifications.classes, scores, strict=True)]


# --- classify / regress: JSON tf.Examples --------------------------------------------------

# A tf.Example as plain data: feature name -> (Feature oneof field or None if empty, values).
Features = dict[str, tuple[str | None, list[Any]]]


def _examples(doc: dict[str, Any], method: str) -> tuple[Features | None, list[Features]]:
    """(context, examples) from `context` (optional, merged into each example when
    serialized) and `examples`, checked and typed as TF Serving does."""
    context = _example(doc["context"]) if "context" in doc else None
    examples = doc.get("examples")
    if examples is None:
        raise invalid_argument(
            f"When method is {method}, key 'examples' is expected and was not found"
        )
    if not isinstance(examples, list):
        raise invalid_argument("Expecting 'examples' value to be an list/array")
    if not examples:
        raise invalid_argument("'examples' value is an empty array")
    return context, [_example(item) for item in examples]


def _serialized_examples(parsed: tuple[Features | None, list[Features]]) -> list[bytes]:
    """Serialized tf.Examples, the context's bytes before each (protobuf merges concatenated
    messages)."""
    from fmnist.serving.wire.messages import Example

    def serialize(features: Features) -> bytes:
        example = Example()
        for name, (kind, values) in features.items():
            feature = example.features.feature[name]  # present even with no values
            if kind is not None:
                getattr(feature, kind).value.extend(values)
        return example.SerializeToString()

    context, examples = parsed
    prefix = serialize(context) if context is not None else b""
    return [prefix + serialize(item) for item in examples]


def _example(value: Any) -> Features:
    if not isinstance(value, dict):
        raise invalid_argument(f"Example must be JSON object but got JSON {type(value).__name__}")
    features: Features = {}
    for name, content in value.items():
        kind, values = None, []
        for item in content if isinstance(content, list) else [content]:
            item_kind, item = _feature_value(name, item)
            if kind not in (None, item_kind):
                raise invalid_argument(
                    f"Unexpected element type in feature: {name} expecting type: "
                    f"{kind.split('_')[0]}"
                )
            kind = item_kind
            values.append(item)
        features[name] = (kind, values)
    return features


def _feature_value(name: str, value: Any) -> tuple[str, Any]:
    """JSON -> (Feature field, value), typed as TF Serving does: int/bool int64, float
    float, str/b64 bytes."""
    if isinstance(value, (bool, int)):
        item = int(value)
        if not -(2**63) <= item <= _INT64_MAX:
            raise invalid_argument(f"Feature: {name} has an element out of int64 range")
        return "int64_list", item
    if isinstance(value, float):
        return "float_list", value
    if isinstance(value, str):
        return "bytes_list", value.encode("utf-8", "surrogatepass")
    if json_tensors.is_b64(value):
        return "bytes_list", json_tensors.decode_b64(value)
    what = "null" if value is None else type(value).__name__
    raise invalid_argument(f"Feature: {name} has element with unexpected JSON type: {what}")
