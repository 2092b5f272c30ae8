"""TF Serving's SignatureDef metadata, written into the int8 TFLite model.

With `--prefer_tflite_model`, TF Serving serves `<version>/model.tflite` with the
SignatureDefs stored in its `signature_defs_metadata` entry (a flexbuffer map, key ->
serialized SignatureDef, as TFLite's signature_def_util writes it); without one it makes
up aliases from tensor names (`serving_default_images`, `StatefulPartitionedCall_1`) and
the version's warm-up requests, written for the SavedModel's `images` input, would fail
its load. So the model carries `serving_default`: `images` uint8 [-1, 28, 28] (the
SavedModel's input, same requests) -> `scores` int8 [-1, 10] (quantized probabilities;
scale and zero point are in the manifest). The interpreter ignores metadata.
"""

from __future__ import annotations

from flatbuffers import flexbuffers
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

from fmnist.serving.wire import dtypes
from fmnist.serving.wire.messages import SignatureDef, TensorInfo

METADATA_NAME = "signature_defs_metadata"
SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
INPUT_ALIAS, OUTPUT_ALIAS = "images", "scores"

# TFLite TensorType -> TF DataType, for the types our models use.
_DTYPES = {
    schema.TensorType.UINT8: dtypes.DT_UINT8,
    schema.TensorType.INT8: dtypes.DT_INT8,
    schema.TensorType.FLOAT32: dtypes.DT_FLOAT,
}


def _tensor_info(tensor: schema.TensorT) -> TensorInfo:
    info = TensorInfo(name=tensor.name.decode(), dtype=_DTYPES[tensor.type])
    shape = tensor.shapeSignature if tensor.shapeSignature is not None else tensor.shape
    for size in shape:
        info.tensor_shape.dim.add(size=int(size))
    return info


def with_serving_signature(content: bytes) -> bytes:
    """`content` (one input, one output) plus a `serving_default` SignatureDef for TF Serving."""
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    subgraph = model.subgraphs[0]
    (inp,), (out,) = subgraph.inputs, subgraph.outputs
    signature = SignatureDef(method_name=PREDICT_METHOD)
    signature.inputs[INPUT_ALIAS].CopyFrom(_tensor_info(subgraph.tensors[inp]))
    signature.outputs[OUTPUT_ALIAS].CopyFrom(_tensor_info(subgraph.tensors[out]))
    serialized = signature.SerializeToString()
    # TFLite's reader takes the value as a C string: a NUL byte would cut it short.
    if b"\0" in serialized:
        raise ValueError("the SignatureDef serializes with a NUL byte; TF Serving cannot read it")
    builder = flexbuffers.Builder()
    with builder.Map():
        builder.Key(SIGNATURE)
        # A STRING of raw bytes (Builder.String would UTF-8-encode a str): flexbuffers' own
        # writer, as TFLite's C++ SetSignatureDefMap stores them.
        builder._WriteBlob(serialized, append_zero=True, type_=flexbuffers.Type.STRING)
    buffer = schema.BufferT()
    buffer.data = bytearray(builder.Finish())
    model.buffers.append(buffer)
    metadata = schema.MetadataT()
    metadata.name, metadata.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), metadata]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
