"""TF Serving's REST API as a function of (HTTP method, path, body) -> (HTTP status, JSON body).

URLs, JSON and error bodies follow TF Serving's http_rest_api_handler and json_tensor: row
(`instances` -> `predictions`) and columnar (`inputs` -> `outputs`) predict, classify and
regress on JSON tf.Examples (`rest_examples`), status and metadata as protobuf JSON. Each
request becomes one data plane call.
"""

from __future__ import annotations

import json
import logging
import re
from functools import partial
from typing import Any
from urllib.parse import unquote

import numpy as np

from fmnist.serving.server.api import responses, rest_examples
from fmnist.serving.server.core.data_plane import (
    SIGNATURE_DEF_FIELD,
    Answered,
    Call,
    DataPlane,
    Target,
)
from fmnist.serving.wire import json_fast, json_tensors
from fmnist.serving.wire.json_fast import NumericSpan
from fmnist.serving.wire.signature import DEFAULT_SIGNATURE
from fmnist.serving.wire.status import Code, StatusError, internal_bug, invalid_argument

log = logging.getLogger(__name__)
API = "rest"
NESTING_TOO_DEEP = "JSON Parse error: nesting too deep"
_VERSION = r"(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
_POST_PATH = re.compile(rf"/v1/models/([^/:]+){_VERSION}:(classify|regress|predict)", re.I)
_GET_PATH = re.compile(rf"/v1/models(?:/([^/:]+))?{_VERSION}(?:/(metadata))?", re.I)
_INT64_MAX = 2**63 - 1


class RestApi:
    """Answers REST requests through the data plane; never raises."""

    def __init__(self, plane: DataPlane):
        self.plane = plane

    async def handle(
        self, http_method: str, path: str, body: bytes | bytearray, deadline: float | None = None
    ) -> tuple[int, bytes]:
        """(HTTP status, JSON body); work stops with DEADLINE_EXCEEDED (504) after `deadline`
        (a `time.monotonic()` value), checked while decoding, running and encoding."""
        call = Call(API, "unknown", Target(""), size=len(body), deadline=deadline)
        try:
            document = await self._parse(call, http_method, path, body)
            return 200, await self._answer(call, *document)
        except Exception as err:
            return _error_answer(err, http_method, path)

    async def _parse(self, call: Call, http_method: str, path: str, body: bytes | bytearray):
        """The route (into `call`) and a POST's document, signature name and examples; what
        fails here is counted as refused."""
        try:
            json_fast.check_deadline(call.deadline)
            call.method, call.target = parse_route(http_method, path)
            if http_method != "POST":
                return None, "", None
            read = partial(_read_document, call.method, body, call.deadline)
            document = await self.plane.placement.request_work(call, read)
            call.request = document[0]
            return document
        except (StatusError, RecursionError) as err:
            if isinstance(err, RecursionError):  # a document nested past Python's stack
                err = invalid_argument(NESTING_TOO_DEEP)
            self.plane.refused(call, err)
            raise err from None

    async def _answer(self, call: Call, doc: Any, signature_name: str, examples: Any) -> bytes:
        plane, method = self.plane, call.method
        if method == "status":
            return await plane.status(call, _status_json)
        if method == "metadata":
            return await plane.metadata(call, [SIGNATURE_DEF_FIELD], _metadata_json)
        if method == "predict":
            inputs, respond = _predict_io(doc, signature_name, call.deadline)
            return await plane.predict(call, signature_name, inputs, (), respond)
        serialize = partial(rest_examples.serialize, examples)
        if method == "classify":
            return await plane.classify(call, signature_name, serialize, _classify_json)
        return await plane.regress(call, signature_name, serialize, _regress_json)


def _read_document(method: str, body: bytes | bytearray, deadline: float | None) -> tuple:
    """A POST's JSON document, its signature name and (classify, regress) its examples."""
    doc = _parse_json(body, deadline, fast=method == "predict")
    examples = None if method == "predict" else rest_examples.parse(doc, method)
    return doc, _signature_name(doc), examples


def _predict_io(doc: dict[str, Any], signature_name: str, deadline: float | None) -> tuple:
    """A Predict's `inputs` (by the dtypes of its signature) and `respond` (row or columnar)."""
    row = "instances" in doc

    def inputs(servable: Any) -> dict[str, np.ndarray]:
        signature = _signature(servable, signature_name)
        if "instances" in doc and "inputs" in doc:
            raise invalid_argument(
                "Not formatted correctly expecting only one of 'inputs' or 'instances' keys "
                "to exist"
            )
        if row:
            return _row_inputs(doc["instances"], signature.inputs, deadline)
        if "inputs" in doc:
            return _columnar_inputs(doc["inputs"], signature.inputs, deadline)
        raise invalid_argument("Missing 'inputs' or 'instances' key")

    def respond(_answered: Answered, outputs: dict[str, np.ndarray]) -> bytes:
        if row:
            return _row_outputs(outputs, deadline)
        return _columnar_outputs(outputs, deadline)

    return inputs, respond


def _error_answer(err: Exception, http_method: str, path: str) -> tuple[int, bytes]:
    if isinstance(err, StatusError):
        return err.http_status, _dump({"error": err.message})
    # A bug outside the data plane (which logs its own): logged, and still one JSON error.
    log.error("REST %s %s answered 500: %s", http_method, path, err, exc_info=err)
    return 500, _dump({"error": internal_bug().message})


def _status_json(statuses: list[Any]) -> bytes:
    return _dump(responses.as_json(responses.model_status_response(statuses)))


def _metadata_json(answered: Answered, signatures: Any) -> bytes:
    return _dump(responses.metadata_json(answered, signatures))


def parse_route(http_method: str, path: str) -> tuple[str, Target]:
    """The API method and target of a TF Serving REST path (INVALID_ARGUMENT if none)."""
    pattern = {"POST": _POST_PATH, "GET": _GET_PATH}.get(http_method)
    match = pattern.fullmatch(path) if pattern else None
    if match is None:
        raise invalid_argument(f"Malformed request: {http_method} {path}")
    name, version_text, label, action = match.groups()
    name = unquote(name) if name else ""
    version = None
    if version_text is not None:
        version = int(version_text)
        if version > _INT64_MAX:
            raise invalid_argument(f"Failed to convert version: {version_text} to numeric.")
    method = (action or "status").lower()
    if http_method == "GET" and not name:
        raise invalid_argument("Missing model name in request.")
    # As in TF Serving, a label does not narrow a status request.
    label = unquote(label) if label is not None and method != "status" else None
    return method, Target(name, version, label)


def _signature_name(doc: dict[str, Any]) -> str:
    signature_name = doc.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise invalid_argument(
            "JSON Value: not formatted correctly. 'signature_name' key must be a string value."
        )
    return signature_name


def _classify_json(_answered: Answered, result: Any) -> bytes:
    return _dump({"results": [_classes_json(c) for c in result.classifications]})


def _regress_json(_answered: Answered, result: Any) -> bytes:
    values = np.array([r.value for r in result.regressions], dtype=np.float32)
    return _dump({"results": json_tensors.to_json(values, "")})


_dump = json_tensors.dump_json


def _parse_json(body: bytes | bytearray, deadline: float | None, fast: bool) -> dict[str, Any]:
    """The request document; `fast` leaves large numeric arrays as text (`NumericSpan`)."""
    if not body or body.isspace():  # (no stripped copy of a large body)
        raise invalid_argument("JSON Parse error: The document is empty")
    try:
        doc = json_fast.loads(body, deadline) if fast else json_fast.plain_loads(body)
    except ValueError as err:  # JSONDecodeError, bad UTF-8
        raise invalid_argument(f"JSON Parse error: {err}") from None
    except RecursionError:
        raise invalid_argument(NESTING_TOO_DEEP) from None
    if not isinstance(doc, dict):
        raise invalid_argument(f"JSON Value: {_short(doc)} Is not object")
    return doc


def _short(value: Any, limit: int = 80) -> str:
    if isinstance(value, NumericSpan):  # its text, as it came
        text = bytes(memoryview(value.data)[value.start : value.start + limit + 1]).decode()
    else:
        text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _signature(servable: Any, signature_name: str):
    name = signature_name or DEFAULT_SIGNATURE
    signature = servable.signatures.get(name)
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
    plain = isinstance(instances, NumericSpan) or (
        isinstance(instances, list) and instances and not _is_object(instances[0])
    )
    if plain and len(names) > 1:
        raise invalid_argument(
            "instances is a plain list, but expecting list of objects as multiple input "
            "tensors required as per tensorinfo_map"
        )
    if isinstance(instances, NumericSpan):  # a plain array of numbers, left as text
        array = _converted(instances, infos[names[0]].dtype, "'instances' list", deadline)
        if array.ndim == 0 or array.shape[0] == 0:
            raise invalid_argument("No values in 'instances' array")
        return {names[0]: array}
    if not isinstance(instances, list):
        raise invalid_argument("Expecting 'instances' to be an list/array")
    if not instances:
        raise invalid_argument("No values in 'instances' array")
    if plain:
        for i, item in enumerate(instances):
            if _is_object(item):
                raise invalid_argument(
                    f"Expecting value/list but got object at item {i} of input list"
                )
        dtype = infos[names[0]].dtype
        return {names[0]: _converted(instances, dtype, "'instances' list", deadline)}
    return _object_rows(instances, names, infos, deadline)


def _object_rows(instances: list, names: list[str], infos, deadline: float | None):
    """Row-format instances that are {input: value} objects, as one array per input."""
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
    except RecursionError:
        raise invalid_argument(NESTING_TOO_DEEP) from None
    except StatusError as err:
        # A body that is not JSON is that, not a tensor error (TF Serving parses it first).
        if err.code != Code.INVALID_ARGUMENT or err.message.startswith("JSON Parse error"):
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
