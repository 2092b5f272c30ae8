"""SignatureDefs stored in a TFLite model's metadata, read without TensorFlow.

TF Serving (tflite_session.cc, through TFLite's tools/signature/signature_def_util.cc)
serves these when a model carries them: a metadata entry `signature_defs_metadata` whose
buffer is a flexbuffer map, signature key -> serialized SignatureDef proto. The TFLite
converter's own signature table is not that entry and TF Serving ignores it.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from fmnist.flatbuffer import Flatbuffer
from fmnist.serving.wire.messages import SignatureDef
from fmnist.serving.wire.signature import Signature, from_signature_def

METADATA_NAME = "signature_defs_metadata"  # kSignatureDefsMetadataName
_MODEL_BUFFERS, _MODEL_METADATA = 4, 6  # Model table fields (TFLite schema.fbs)
_META_NAME, _META_BUFFER = 0, 1  # Metadata table fields
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2  # Buffer table fields


def read_signature_defs(content: bytes) -> dict[str, Signature] | None:
    """The model's SignatureDef metadata, or None when it has none; ValueError if malformed."""
    fb = Flatbuffer(content)
    model = fb.root()
    for metadata in fb.tables(model, _MODEL_METADATA):
        start, length = fb.vector(metadata, _META_NAME, 1)
        if content[start : start + length] != METADATA_NAME.encode():
            continue
        where = fb.field(metadata, _META_BUFFER)
        index = fb.u32(where) if where is not None else 0
        buffers = fb.tables(model, _MODEL_BUFFERS)
        if index >= len(buffers):
            raise ValueError(f"metadata buffer {index} does not exist")
        return _parse_map(_buffer_bytes(fb, buffers[index], content))
    return None


def _buffer_bytes(fb: Flatbuffer, buffer: tuple[int, int, int], content: bytes) -> bytes:
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


def _signature_def(data: bytes) -> Signature:
    try:
        return from_signature_def(SignatureDef.FromString(data))
    except DecodeError as err:
        raise ValueError(f"a SignatureDef does not parse: {err}") from None
