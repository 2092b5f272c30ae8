"""The manifest's JSON Schema: every malformed field is a ManifestError naming it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fmnist import manifest as manifest_module
from fmnist.errors import EXIT_USAGE, ManifestError
from fmnist.manifest import SCHEMA, SCHEMA_VERSION, load_manifest, parse_json, validate


def _full(fields: dict[str, Any]) -> dict[str, Any]:
    files = {
        "model_int8.tflite": {"sha256": "a" * 64, "bytes": 10},
        "reference_outputs.npz": {"sha256": "b" * 64, "bytes": 20},
    }
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **fields, "files": files}


def _set(path: str, value: Any) -> Callable[[dict], None]:
    *parents, last = path.split(".")

    def mutate(data: dict) -> None:
        for key in parents:
            data = data[key]
        data[last] = value

    return mutate


def _delete(path: str) -> Callable[[dict], None]:
    *parents, last = path.split(".")

    def mutate(data: dict) -> None:
        for key in parents:
            data = data[key]
        del data[last]

    return mutate


def _nested(depth: int) -> dict:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


MALFORMED = [
    (
        "int8 input without shape",
        _delete("tflite.int8.input.shape"),
        "manifest.tflite.int8.input must contain ['shape']",
    ),
    (
        "int8 input not an object",
        _set("tflite.int8.input", "uint8"),
        "manifest.tflite.int8.input must be object",
    ),
    (
        "int8 output shape of strings",
        _set("tflite.int8.output.shape", ["a"]),
        "manifest.tflite.int8.output.shape[0] must be integer",
    ),
    (
        "unknown dtype",
        _set("tflite.int8.input.dtype", "complex64"),
        "manifest.tflite.int8.input.dtype must be one of",
    ),
    (
        "negative scale",
        _set("tflite.int8.input.scale", -1.0),
        "manifest.tflite.int8.input.scale must be bigger than or equal to 0",
    ),
    (
        "fractional zero point",
        _set("tflite.int8.input.zero_point", 0.5),
        "manifest.tflite.int8.input.zero_point must be integer or null",
    ),
    (
        "unknown TFLite kind",
        lambda d: d["tflite"].update(float16=d["tflite"]["int8"]),
        "manifest.tflite must be named by",
    ),
    ("no TFLite model", _set("tflite", {}), "manifest.tflite must contain at least 1"),
    (
        "num_examples missing",
        _delete("reference.num_examples"),
        "manifest.reference must contain ['num_examples']",
    ),
    (
        "num_examples a string",
        _set("reference.num_examples", "10000"),
        "manifest.reference.num_examples must be integer",
    ),
    (
        "num_examples a boolean",
        _set("reference.num_examples", True),
        "manifest.reference.num_examples must be integer",
    ),
    (
        "num_examples zero",
        _set("reference.num_examples", 0),
        "manifest.reference.num_examples must be bigger than or equal to 1",
    ),
    (
        "labels digest not hex",
        _set("reference.labels_sha256", "xyz"),
        "manifest.reference.labels_sha256 must match pattern",
    ),
    (
        "model version beyond int64",
        _set("model_version", 2**63),
        "manifest.model_version must be smaller than or equal to",
    ),
    (
        "model version a string",
        _set("model_version", "1"),
        "manifest.model_version must be integer",
    ),
    ("no class names", _set("class_names", []), "manifest.class_names must contain at least 1"),
    (
        "class name not a string",
        _set("class_names", ["a", 1]),
        "manifest.class_names[1] must be string",
    ),
    (
        "tolerance with an unknown limit",
        _set("tolerance.max_drop", 1),
        "manifest.tolerance must not contain {'max_drop'}",
    ),
    (
        "agreement above 1",
        _set("tolerance.min_agreement", 2),
        "manifest.tolerance.min_agreement must be smaller than or equal to 1",
    ),
    (
        "negative accuracy drop",
        _set("tolerance.max_accuracy_drop_pp", -1),
        "manifest.tolerance.max_accuracy_drop_pp must be bigger than or equal to 0",
    ),
    ("tolerance missing", _delete("tolerance"), "manifest must contain ['tolerance']"),
    (
        "accuracy above 1",
        _set("float_metrics.accuracy", 1.5),
        "manifest.float_metrics.accuracy must be smaller than or equal to 1",
    ),
    (
        "signature inputs not specs",
        _set("saved_model.inputs", {"images": 3}),
        "manifest.saved_model.inputs.images must be object",
    ),
    (
        "flip_average not a boolean",
        _set("flip_average", "yes"),
        "manifest.flip_average must be boolean",
    ),
    (
        "producer nested deeply",
        _set("producer", _nested(200)),
        "manifest.producer.a must be string",
    ),
    (
        "file entry without digest",
        lambda d: d["files"].update({"model_int8.tflite": {"bytes": 1}}),
        "manifest.files.model_int8.tflite must contain ['sha256']",
    ),
    (
        "negative file size",
        _set("files", {"x": {"sha256": "a" * 64, "bytes": -1}}),
        "bytes must be bigger than or equal to 0",
    ),
    (
        "file outside the bundle",
        _set("files", {"../x": {"sha256": "a" * 64, "bytes": 1}}),
        "must be a path inside",
    ),
    (
        "reference without checksum",
        _set("reference.file", "other.npz"),
        "'other.npz' is referenced but has no checksum entry",
    ),
    ("another schema", _set("schema", "something/else"), "not an fmnist-deploy manifest"),
    ("newer schema version", _set("schema_version", SCHEMA_VERSION + 1), "upgrade fmnist-deploy"),
    (
        "schema version a string",
        _set("schema_version", "1"),
        "manifest.schema_version must be integer",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [pytest.param(m, msg, id=name) for name, m, msg in MALFORMED],
)
def test_malformed_manifest_names_the_field(
    fields: dict[str, Any], mutate: Callable[[dict], None], message: str
) -> None:
    data = _full(fields)
    mutate(data)
    with pytest.raises(ManifestError) as raised:
        validate(data, "b/manifest.json")
    assert message in str(raised.value)
    assert str(raised.value).startswith("b/manifest.json: ")
    assert raised.value.exit_code == EXIT_USAGE


def test_export_fields_are_valid(fields: dict[str, Any]) -> None:
    validate(_full(fields), "b/manifest.json")


def test_a_manifest_that_is_not_an_object() -> None:
    with pytest.raises(ManifestError, match="must be a JSON object"):
        validate([1, 2], "b/manifest.json")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param('{"a":' * 100_000 + "1" + "}" * 100_000, "nested too deeply", id="nested"),
        pytest.param('{"a": NaN}', "NaN is not a JSON number", id="nan"),
        pytest.param('{"a": Infinity}', "Infinity is not a JSON number", id="infinity"),
        pytest.param('{"a": -Infinity}', "-Infinity is not a JSON number", id="minus-infinity"),
        pytest.param('{"a": 1e400}', "1e400 is out of range", id="overflowing-float"),
        pytest.param('{"a": ' + "9" * 5000 + "}", "digits", id="5000-digit-int"),
        pytest.param('{"a": 1', "Expecting", id="truncated"),
    ],
)
def test_parse_json_refuses_what_json_allows_but_a_manifest_cannot_hold(
    text: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        parse_json(text.encode())


def test_parse_json_refuses_bytes_that_are_not_utf8() -> None:
    with pytest.raises(ValueError, match="utf-8"):
        parse_json(b'{"a": "\xff"}')


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"[" * 200_000, "not valid JSON: nested too deeply", id="nested"),
        pytest.param(b"", "not valid JSON", id="empty"),
        pytest.param(b'{"schema": NaN}', "not valid JSON: NaN", id="nan"),
        pytest.param(b"{}", "not an fmnist-deploy manifest", id="empty-object"),
    ],
)
def test_load_manifest_turns_every_parse_failure_into_one_error(
    tmp_path: Path, content: bytes, message: str
) -> None:
    (tmp_path / "manifest.json").write_bytes(content)
    with pytest.raises(ManifestError, match=message):
        load_manifest(tmp_path)


def test_an_oversized_manifest_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manifest_module, "MAX_MANIFEST_BYTES", 1000)
    (tmp_path / "manifest.json").write_text(json.dumps({"pad": "x" * 2000}))
    with pytest.raises(ManifestError, match="too large for a manifest"):
        load_manifest(tmp_path)


def test_typed_access_to_what_commands_read(make_bundle) -> None:
    manifest = load_manifest(make_bundle())
    assert manifest.reference.num_examples == 50 and manifest.reference.split == "test"
    assert manifest.reference.labels_sha256 == "0" * 64
    model = manifest.tflite("int8")
    assert model.file == "model_int8.tflite" and model.path == manifest.bundle_dir / model.file
    assert model.input.shape == (-1, 28, 28, 1) and model.output.zero_point == -128
    assert manifest.tolerance.min_agreement == 0.99
