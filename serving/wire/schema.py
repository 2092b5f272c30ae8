"""A few lines of Python per protobuf message: the notation `protos.py` declares TF Serving's
wire types in, turned into descriptors at import time.

Fields are written as in a `.proto` file (`"repeated string output_filter = 3"`,
`"map<string, TensorProto> inputs = 2"`, `"optional bytes client_id = 6"`); message and enum
types are named as `.proto` files name them (relative names use C++-like scoping, which the
DescriptorPool resolves). Descriptors built at run time need no code generator at build
time and work with any protobuf runtime (upb, pure Python, or Debian's), so the same wheel
installs on a Raspberry Pi. The messages live in a private pool: no clash with TensorFlow's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from google.protobuf import descriptor_pb2

_Field = descriptor_pb2.FieldDescriptorProto
_SCALAR_NAMES = (
    "double float int64 uint64 int32 fixed64 fixed32 bool string bytes uint32 sfixed32 sfixed64 "
    "sint32 sint64"
)
_SCALARS = {name: getattr(_Field, f"TYPE_{name.upper()}") for name in _SCALAR_NAMES.split()}
_LINE = re.compile(
    r"(?:(?P<label>repeated|optional)\s+)?"
    r"(?:map<\s*(?P<key>\w+)\s*,\s*(?P<value>[\w.]+)\s*>|(?P<type>[\w.]+))\s+"
    r"(?P<name>\w+)\s*=\s*(?P<number>\d+)"
    r'(?:\s*\[json_name\s*=\s*"(?P<json>\w+)"\])?'
)


@dataclass(frozen=True)
class Oneof:
    name: str
    fields: tuple[str, ...]


@dataclass(frozen=True)
class Enum:
    name: str
    values: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Message:
    name: str
    members: tuple[str | Oneof | Message | Enum, ...]


def oneof(name: str, *fields: str) -> Oneof:
    return Oneof(name, fields)


def enum(name: str, **values: int) -> Enum:
    return Enum(name, tuple(values.items()))


def message(name: str, *members: str | Oneof | Message | Enum) -> Message:
    return Message(name, members)


def proto_file(
    path: str, package: str, *members: Message | Enum, deps: tuple[str, ...] = ()
) -> descriptor_pb2.FileDescriptorProto:
    """A proto3 file's descriptor; `deps` name the files whose types it refers to."""
    file = descriptor_pb2.FileDescriptorProto(
        name=path, package=package, syntax="proto3", dependency=list(deps)
    )
    for member in members:
        if isinstance(member, Enum):
            _add_enum(file.enum_type.add(), member)
        else:
            _add_message(file.message_type.add(), member)
    return file


def _add_enum(proto: descriptor_pb2.EnumDescriptorProto, declared: Enum) -> None:
    proto.name = declared.name
    for name, number in declared.values:
        proto.value.add(name=name, number=number)


def _add_message(proto: descriptor_pb2.DescriptorProto, declared: Message) -> None:
    proto.name = declared.name
    for member in declared.members:
        if isinstance(member, str):
            _add_field(proto, member)
        elif isinstance(member, Oneof):
            index = len(proto.oneof_decl)
            proto.oneof_decl.add(name=member.name)
            for line in member.fields:
                _add_field(proto, line).oneof_index = index
        elif isinstance(member, Enum):
            _add_enum(proto.enum_type.add(), member)
        else:
            _add_message(proto.nested_type.add(), member)
    # proto3 `optional` fields sit in synthetic oneofs, which must follow the real ones.
    for field in proto.field:
        if field.proto3_optional:
            field.oneof_index = len(proto.oneof_decl)
            proto.oneof_decl.add(name=f"_{field.name}")


def _add_field(proto: descriptor_pb2.DescriptorProto, line: str) -> _Field:
    match = _LINE.fullmatch(line.strip())
    if match is None:
        raise ValueError(f"{proto.name}: cannot read field declaration {line!r}")
    label, name = match["label"], match["name"]
    field = proto.field.add(name=name, number=int(match["number"]))
    field.label = _Field.LABEL_REPEATED if label == "repeated" else _Field.LABEL_OPTIONAL
    field.proto3_optional = label == "optional"
    if match["json"]:
        field.json_name = match["json"]
    if match["key"]:  # map<K, V>: a repeated nested entry message, as protoc writes it
        entry = proto.nested_type.add(name=_entry_name(name))
        entry.options.map_entry = True
        _set_type(entry.field.add(name="key", number=1, label=_Field.LABEL_OPTIONAL), match["key"])
        value = entry.field.add(name="value", number=2, label=_Field.LABEL_OPTIONAL)
        _set_type(value, match["value"])
        field.label, field.type_name = _Field.LABEL_REPEATED, entry.name
    else:
        _set_type(field, match["type"])
    return field


def _set_type(field: _Field, type_name: str) -> None:
    """A scalar's type, or the name of a message or enum (the pool works out which)."""
    if type_name in _SCALARS:
        field.type = _SCALARS[type_name]
    else:
        field.type_name = type_name


def _entry_name(field_name: str) -> str:
    """protoc's name for a map field's entry type: `version_labels` -> `VersionLabelsEntry`."""
    return "".join(part[:1].upper() + part[1:] for part in field_name.split("_")) + "Entry"
