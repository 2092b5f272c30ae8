"""The project's TF Serving wire types against the official ones (`tensorflow-serving-api` and
TensorFlow's protos, loaded in the same process): the same fields, nothing the APIs carry
left out, and random messages that cross between the two byte for byte, both ways."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import descriptor, json_format, message_factory, symbol_database
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorflow.core.protobuf import struct_pb2  # noqa: F401  (registers the official types)
from tensorflow.tsl.profiler.protobuf import profiler_options_pb2  # noqa: F401
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    model_service_pb2,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

from fmnist.serving.wire import messages
from fmnist.serving.wire.protos import FILES

OFFICIAL = symbol_database.Default().pool
# Left out on purpose (protos.py says why): most of TensorFlow's config protos hang off them.
OMITTED = {
    "tensorflow.serving.SessionRunRequest.options",
    "tensorflow.serving.SessionRunResponse.metadata",
}
# Declared although the pip packages ship no Python module for them (config files only).
NO_OFFICIAL_MODULE = {
    "tensorflow.serving.BatchingParameters",
    "tensorflow.serving.PrometheusConfig",
    "tensorflow.serving.MonitoringConfig",
    "tensorflow.ToolRequestOptions",
    "tensorflow.ProfileRequest",
    "tensorflow.ProfileToolData",
    "tensorflow.ProfileResponse",
    "tensorflow.TerminateRequest",
    "tensorflow.TerminateResponse",
}
Field = descriptor.FieldDescriptor


def _declared_messages() -> list[str]:
    names: list[str] = []

    def walk(prefix: str, protos) -> None:
        for proto in protos:
            if not proto.options.map_entry:
                names.append(f"{prefix}.{proto.name}")
                walk(f"{prefix}.{proto.name}", proto.nested_type)

    for file in FILES:
        walk(file.package, file.message_type)
    return names


def _field_facts(field: Field) -> tuple:
    oneof = field.containing_oneof
    real_oneof = oneof.name if oneof is not None and not oneof.name.startswith("_") else None
    kind = field.message_type or field.enum_type
    return (
        field.number,
        field.type,
        field.is_repeated,
        kind.full_name if kind is not None else None,
        real_oneof,
        field.json_name,
        field.has_presence,
    )


@pytest.mark.parametrize(
    "full_name", [n for n in _declared_messages() if n not in NO_OFFICIAL_MODULE]
)
def test_declared_message_has_the_official_fields(full_name: str) -> None:
    ours = messages.POOL.FindMessageTypeByName(full_name)
    official = OFFICIAL.FindMessageTypeByName(full_name)
    wanted = {f.name: _field_facts(f) for f in official.fields}
    wanted = {name: facts for name, facts in wanted.items() if f"{full_name}.{name}" not in OMITTED}
    assert {f.name: _field_facts(f) for f in ours.fields} == wanted
    enums = {e.name: [(v.name, v.number) for v in e.values] for e in official.enum_types}
    assert {e.name: [(v.name, v.number) for v in e.values] for e in ours.enum_types} == enums


def test_every_message_the_official_apis_carry_is_declared() -> None:
    roots = [
        prediction_log_pb2.PredictionLog.DESCRIPTOR,
        model_server_config_pb2.ModelServerConfig.DESCRIPTOR,
        get_model_metadata_pb2.SignatureDefMap.DESCRIPTOR,
        health_pb2.HealthCheckResponse.DESCRIPTOR,
    ]
    for module in (prediction_service_pb2, model_service_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            roots += [t for m in service.methods for t in (m.input_type, m.output_type)]
    reachable, todo = set(), list(roots)
    while todo:
        message = todo.pop()
        name = message.full_name
        if name in reachable or name.startswith("google.protobuf."):
            continue
        reachable.add(name)
        todo += [
            f.message_type
            for f in message.fields
            if f.message_type is not None and f"{name}.{f.name}" not in OMITTED
        ]
    entries = {n for n in reachable if OFFICIAL.FindMessageTypeByName(n).GetOptions().map_entry}
    assert reachable - entries - set(_declared_messages()) == set()


def test_services_name_the_official_methods_and_types() -> None:
    for module in (prediction_service_pb2, model_service_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            ours = messages.SERVICES[service.full_name]
            official = {
                m.name: (m.input_type.full_name, m.output_type.full_name) for m in service.methods
            }
            assert {
                method: (request.DESCRIPTOR.full_name, response.DESCRIPTOR.full_name)
                for method, (request, response) in ours.items()
            } == official


# --- random messages, both ways ----------------------------------------------------------

_SCALARS = {
    Field.TYPE_DOUBLE: st.floats(allow_nan=False, width=64),
    Field.TYPE_FLOAT: st.floats(allow_nan=False, width=32),
    Field.TYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    Field.TYPE_SINT64: st.integers(-(2**63), 2**63 - 1),
    Field.TYPE_UINT64: st.integers(0, 2**64 - 1),
    Field.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    Field.TYPE_UINT32: st.integers(0, 2**32 - 1),
    Field.TYPE_BOOL: st.booleans(),
    Field.TYPE_STRING: st.text(max_size=6),
    Field.TYPE_BYTES: st.binary(max_size=6),
}


def _scalar(field: Field):
    if field.enum_type is not None:
        return st.sampled_from([v.number for v in field.enum_type.values])
    return _SCALARS[field.type]


@st.composite
def random_message(draw, message_type: descriptor.Descriptor, depth: int = 0):
    """A message of `message_type` (from either pool) with random values in some fields;
    `google.protobuf.Any` stays empty (the metadata fixtures cover it)."""
    message = message_factory.GetMessageClass(message_type)()
    for field in message_type.fields:
        full = f"{message_type.full_name}.{field.name}"
        kind = field.message_type
        if full in OMITTED or draw(st.integers(0, 2)) == 0:
            continue
        if kind is not None and (depth >= 3 or kind.full_name == "google.protobuf.Any"):
            continue
        container = getattr(message, field.name)
        if kind is not None and kind.GetOptions().map_entry:
            key_field, value_field = kind.fields_by_name["key"], kind.fields_by_name["value"]
            for key in draw(st.lists(_scalar(key_field), max_size=2, unique=True)):
                if value_field.message_type is None:
                    container[key] = draw(_scalar(value_field))
                elif value_field.message_type.full_name != "google.protobuf.Any":
                    value = draw(random_message(value_field.message_type, depth + 1))
                    container[key].CopyFrom(value)
        elif field.is_repeated:
            for _ in range(draw(st.integers(1, 2))):
                if kind is None:
                    container.append(draw(_scalar(field)))
                else:
                    container.add().CopyFrom(draw(random_message(kind, depth + 1)))
        elif kind is None:
            setattr(message, field.name, draw(_scalar(field)))
        else:
            container.CopyFrom(draw(random_message(kind, depth + 1)))
    return message


CROSSING = [
    "tensorflow.serving.PredictRequest",
    "tensorflow.serving.PredictResponse",
    "tensorflow.serving.ClassificationRequest",
    "tensorflow.serving.MultiInferenceResponse",
    "tensorflow.serving.GetModelMetadataRequest",
    "tensorflow.serving.GetModelStatusResponse",
    "tensorflow.serving.ReloadConfigRequest",
    "tensorflow.serving.PredictionLog",
    "tensorflow.serving.SignatureDefMap",
]
_FEW = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


def _same_content(ours, official) -> None:
    """Equal bytes (deterministic serialization), and equal JSON field by field."""
    assert ours.SerializeToString(deterministic=True) == official.SerializeToString(
        deterministic=True
    )
    assert json_format.MessageToDict(
        ours, descriptor_pool=messages.POOL
    ) == json_format.MessageToDict(official)


@pytest.mark.parametrize("full_name", CROSSING)
@_FEW
@given(data=st.data())
def test_official_messages_parse_identically_as_ours(full_name: str, data) -> None:
    official = data.draw(random_message(OFFICIAL.FindMessageTypeByName(full_name)))
    ours = messages.message_class(full_name).FromString(official.SerializeToString())
    _same_content(ours, official)


@pytest.mark.parametrize("full_name", CROSSING)
@_FEW
@given(data=st.data())
def test_our_messages_parse_identically_as_official(full_name: str, data) -> None:
    ours = data.draw(random_message(messages.POOL.FindMessageTypeByName(full_name)))
    official_class = message_factory.GetMessageClass(OFFICIAL.FindMessageTypeByName(full_name))
    official = official_class.FromString(ours.SerializeToString())
    _same_content(ours, official)


def test_omitted_session_run_fields_survive_as_unknown_bytes() -> None:
    from tensorflow_serving.apis import session_service_pb2

    official = session_service_pb2.SessionRunRequest(fetch=["y"])
    official.options.timeout_in_ms = 250
    log = prediction_log_pb2.PredictionLog()
    log.session_run_log.request.CopyFrom(official)
    raw = log.SerializeToString()
    assert messages.PredictionLog.FromString(raw).SerializeToString() == raw


# --- TF Serving's own metadata answers ------------------------------------------------------


@pytest.mark.parametrize(
    "fixture",
    [
        "half_plus_two_model_metadata.json",
        "saved_model_half_plus_two_2_versions_metadata.json",
        "saved_model_half_plus_two_tf2_2_versions_metadata.json",
    ],
)
def test_metadata_json_of_tf_serving_fixtures_round_trips(
    serving_fixtures: Path, fixture: str
) -> None:
    document = json.loads((serving_fixtures / fixture).read_text())
    response = messages.GetModelMetadataResponse()
    json_format.ParseDict(document["model_spec"], response.model_spec)
    signatures = json_format.ParseDict(
        document["metadata"]["signature_def"], messages.SignatureDefMap()
    )
    response.metadata["signature_def"].Pack(signatures)
    unpacked = messages.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(unpacked)
    printed = {
        "model_spec": json_format.MessageToDict(
            response.model_spec,
            always_print_fields_with_no_presence=True,
            preserving_proto_field_name=True,
        ),
        "metadata": {
            "signature_def": json_format.MessageToDict(
                unpacked,
                always_print_fields_with_no_presence=True,
                preserving_proto_field_name=True,
            )
        },
    }
    assert _without_empty_maps(printed) == _without_empty_maps(document)


def _without_empty_maps(value):
    """JSON without `{}` values: TF Serving releases differ in printing empty maps (this
    fixture leaves out `defaults` of `__saved_model_init_op`)."""
    if isinstance(value, dict):
        return {k: _without_empty_maps(v) for k, v in value.items() if v != {}}
    if isinstance(value, list):
        return [_without_empty_maps(v) for v in value]
    return value


def test_both_kinds_live_in_one_process_without_clashing() -> None:
    official = predict_pb2.PredictRequest()
    official.model_spec.name = "m"
    official.inputs["x"].float_val.append(1.5)
    ours = messages.PredictRequest.FromString(official.SerializeToString())
    assert type(ours) is not type(official)
    assert ours.inputs["x"].float_val[:] == [1.5]
    assert OFFICIAL.FindMessageTypeByName("tensorflow.TensorProto") is not (
        messages.POOL.FindMessageTypeByName("tensorflow.TensorProto")
    )
    # the official classes are untouched by ours, and the other way round
    assert predict_pb2.PredictRequest.FromString(ours.SerializeToString()) == official


def test_tfrecords_cross_between_tensorflow_and_the_project(tmp_path: Path) -> None:
    import tensorflow as tf

    from fmnist.serving.wire.tfrecord import read_records, write_records

    records = [b"", b"warm", bytes(range(256)) * 40]
    ours, theirs = tmp_path / "ours.tfrecord", tmp_path / "theirs.tfrecord"
    write_records(ours, records)
    with tf.io.TFRecordWriter(str(theirs)) as writer:
        for record in records:
            writer.write(record)
    assert ours.read_bytes() == theirs.read_bytes()
    assert list(tf.data.TFRecordDataset(str(ours)).as_numpy_iterator()) == records
    assert list(read_records(theirs)) == records
