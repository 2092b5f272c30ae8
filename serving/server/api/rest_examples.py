"""REST classify and regress: TF Serving's JSON tf.Examples (`context` and `examples`), typed
and checked as its http_rest_api_handler does, then serialized as tf.Example messages."""

from __future__ import annotations

from typing import Any

from fmnist.serving.wire import json_tensors
from fmnist.serving.wire.messages import Example
from fmnist.serving.wire.status import invalid_argument

_INT64_MAX = 2**63 - 1
# A tf.Example as plain data: feature name -> (Feature oneof field or None if empty, values).
Features = dict[str, tuple[str | None, list[Any]]]
Parsed = tuple[Features | None, list[Features]]


def parse(doc: dict[str, Any], method: str) -> Parsed:
    """(context, examples) of the document, checked and typed as TF Serving does."""
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


def serialize(parsed: Parsed) -> list[bytes]:
    """Serialized tf.Examples, each after the context's bytes (protobuf merges them)."""

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
    """JSON -> (Feature field, value): int/bool int64, float float, str/b64 bytes."""
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
