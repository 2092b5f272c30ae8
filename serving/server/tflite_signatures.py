"""SignatureDefs stored in a TFLite model's metadata, read without TensorFlow.

TF Serving (tflite_session.cc, through TFLite's tools/signature/signature_def_util.cc)
serves these when a model carries them: a metadata entry `signature_defs_metadata` whose
buffer is a flexbuffer map, signature key -> serialized SignatureDef proto. The TFLite
converter's own signature table is not that entry and TF Serving ignores it. An edge
install has no TF protos, so the few SignatureDef fields a signature needs are decoded
from the protobuf wire format here.
"""

from __future__ import annotations

from collections.abc import Iterator

from fmnist.edge.model_check import _Flatbuffer
from fmnist.serving.wire.signature import Signature, TensorInfo

METADATA_NAME = "signature_defs_metadata"  # kSignatureDefsMetadataName
_MODEL_BUFFERS, _MODEL_METADATA = 4, 6  # Model table fields (TFLite schema.fbs)
_META_NAME, _META_BUFFER = 0, 1  # Metadata table fields
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2  # Buffer table fields


def read_signature_defs(content: bytes) -> dict[str, Signature] | None:
    """The model's SignatureDef metadata, or None when it has none; ValueError if malformed."""
    fb = _Flatbuffer(content)
    model = fb.table(fb._u32(0))
    for metadata in fb.tables(model, _MODEL_METADATA):
        start, length = fb.vector(metadata, _META_NAME, 1)
        if content[start : start + length] != METADATA_NAME.encode():
            continue
        where = fb.field(metadata, _META_BUFFER)
        index = fb._u32(where) if where is not None else 0
        buffers = fb.tables(model, _MODEL_BUFFERS)
        if index >= len(buffers):
            raise ValueError(f"metadata buffer {index} does not exist")
        return _parse_map(_buffer_bytes(fb, buffers[index], content))
    return None


def _buffer_bytes(fb: _Flatbuffer, buffer: tuple[int, int, int], content: bytes) -> bytes:
    start, length = fb.vector(buffer, _BUFFER_DATA, 1)
    if length:
        return content[start : start + length]
    offset, size = fb.u64(buffer, _BUFFER_OFFSET), fb.u64(buffer, _BUFFER_SIZE)
    if offset + size > len(content):
        raise ValueError(f"buffer data at {offset} (+{size}) is past the end")
    return content[offset : offset + size]


def _parse_map(data: bytes) -> dict[str, Signature]:
    try:
        from flatbuffers import flexbuffers  # ai-edge-litert depends on it
    except ImportError:
        raise ValueError("reading its SignatureDefs needs: pip install flatbuffers") from None
    try:
        entries = flexbuffers.GetRoot(data).AsMap
        pairs = [
            (k.AsKey, v.AsStringBytes) for k, v in zip(entries.Keys, entries.Values, strict=True)
        ]
    except Exception as err:  # flexbuffers raises anything on a malformed buffer
        raise ValueError(f"unreadable {METADATA_NAME} metadata: {err}") from None
    return {key: _signature_def(value) for key, value in pairs}


# --- protobuf wire format ----------------------------------------------------------------


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated SignatureDef")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) pairs: ints for varints, bytes for length-delimited fields."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated SignatureDef")
            value, pos = data[pos : pos + length], pos + length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            continue
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, value


def _int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _tensor_info(data: bytes) -> TensorInfo:
    """TensorInfo: name = 1, dtype = 2, tensor_shape = 3 (dim = 2 {size = 1}, unknown_rank = 3)."""
    name, dtype, dims, unknown = "", 0, [], False
    for number, value in _fields(data):
        if number == 1 and isinstance(value, bytes):
            name = value.decode("utf-8", "replace")
        elif number == 2 and isinstance(value, int):
            dtype = value
        elif number == 3 and isinstance(value, bytes):
            for shape_field, shape_value in _fields(value):
                if shape_field == 2 and isinstance(shape_value, bytes):
                    size = [v for f, v in _fields(shape_value) if f == 1 and isinstance(v, int)]
                    dims.append(_int64(size[-1]) if size else 0)
                elif shape_field == 3 and isinstance(shape_value, int):
                    unknown = bool(shape_value)
    return TensorInfo(name=name, dtype=dtype, shape=None if unknown else tuple(dims))


def _map_entry(data: bytes) -> tuple[str, TensorInfo]:
    key, info = "", b""
    for number, value in _fields(data):
        if number == 1 and isinstance(value, bytes):
            key = value.decode("utf-8", "replace")
        elif number == 2 and isinstance(value, bytes):
            info = value
    return key, _tensor_info(info)


def _signature_def(data: bytes) -> Signature:
    """SignatureDef: inputs = 1, outputs = 2 (map<string, TensorInfo>), method_name = 3."""
    inputs, outputs, method = {}, {}, ""
    for number, value in _fields(data):
        if number in (1, 2) and isinstance(value, bytes):
            key, info = _map_entry(value)
            (inputs if number == 1 else outputs)[key] = info
        elif number == 3 and isinstance(value, bytes):
            method = value.decode("utf-8", "replace")
    return Signature(method_name=method, inputs=inputs, outputs=outputs)
