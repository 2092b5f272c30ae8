"""TF Serving's `model.tflite`: the int8 model answering as the SavedModel does.

With `--prefer_tflite_model`, TF Serving serves `<version>/model.tflite` with the
SignatureDefs stored in its `signature_defs_metadata` entry (a flexbuffer map, key ->
serialized SignatureDef, as TFLite's signature_def_util writes it); without one it makes
up aliases from tensor names (`serving_default_images`, `StatefulPartitionedCall_1`) and
the version's warm-up requests, written for the SavedModel's `images` input, would fail
its load. So the served model is the int8 model (its ops and weights unchanged) with two
ops appended, DEQUANTIZE and ARG_MAX, and carries `serving_default` with the SavedModel's
names: `images` uint8 [-1, H, W, C] -> `probabilities` float32 [-1, classes] and
`class_ids` int64 [-1]. A client then needs no quantization constants from the manifest.
"""

from __future__ import annotations

import struct

from flatbuffers import flexbuffers
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

from fmnist.serving.wire import dtypes
from fmnist.serving.wire.messages import SignatureDef, TensorInfo

METADATA_NAME = "signature_defs_metadata"
SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
INPUT_ALIAS = "images"
PROBABILITIES, CLASS_IDS = "probabilities", "class_ids"

# TFLite TensorType -> TF DataType, for the types our models use.
_DTYPES = {
    schema.TensorType.UINT8: dtypes.DT_UINT8,
    schema.TensorType.INT8: dtypes.DT_INT8,
    schema.TensorType.FLOAT32: dtypes.DT_FLOAT,
    schema.TensorType.INT64: dtypes.DT_INT64,
}


def _tensor_info(tensor: schema.TensorT) -> TensorInfo:
    info = TensorInfo(name=tensor.name.decode(), dtype=_DTYPES[tensor.type])
    shape = tensor.shapeSignature if tensor.shapeSignature is not None else tensor.shape
    for size in shape:
        info.tensor_shape.dim.add(size=int(size))
    return info


def _add_tensor(
    model: schema.ModelT, name: str, kind: int, shape: list[int], data: bytes = b""
) -> int:
    """A new tensor of subgraph 0 with its own buffer (`data`: a constant); its index."""
    buffer = schema.BufferT()
    buffer.data = bytearray(data) if data else None
    model.buffers.append(buffer)
    tensor = schema.TensorT()
    tensor.name, tensor.type, tensor.buffer = name.encode(), kind, len(model.buffers) - 1
    tensor.shape = [max(size, 1) for size in shape]  # as loaded: batch 1
    tensor.shapeSignature = list(shape)
    model.subgraphs[0].tensors.append(tensor)
    return len(model.subgraphs[0].tensors) - 1


def _add_op(
    model: schema.ModelT, code: int, version: int, inputs: list[int], outputs: list[int]
) -> schema.OperatorT:
    """Append a builtin op to subgraph 0 (it runs last); ops run in the order listed."""
    codes = model.operatorCodes
    found = [i for i, c in enumerate(codes) if c.builtinCode == code and c.version == version]
    if not found:
        opcode = schema.OperatorCodeT()
        opcode.builtinCode, opcode.deprecatedBuiltinCode, opcode.version = code, code, version
        codes.append(opcode)
        found = [len(codes) - 1]
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = found[0], inputs, outputs
    model.subgraphs[0].operators.append(op)
    return op


def _append_outputs(model: schema.ModelT) -> tuple[int, int]:
    """DEQUANTIZE (an int8 output) and ARG_MAX after the scores; the two new outputs."""
    subgraph = model.subgraphs[0]
    (scores,) = subgraph.outputs
    tensor = subgraph.tensors[scores]
    signature = tensor.shape if tensor.shapeSignature is None else tensor.shapeSignature
    shape = [int(d) for d in signature]
    probabilities = scores
    if subgraph.tensors[scores].type != schema.TensorType.FLOAT32:
        probabilities = _add_tensor(model, PROBABILITIES, schema.TensorType.FLOAT32, shape)
        _add_op(model, schema.BuiltinOperator.DEQUANTIZE, 2, [scores], [probabilities])
    else:
        tensor.name = PROBABILITIES.encode()
    axis = _add_tensor(model, "class_axis", schema.TensorType.INT32, [1], struct.pack("<i", 1))
    class_ids = _add_tensor(model, CLASS_IDS, schema.TensorType.INT64, shape[:1])
    argmax = _add_op(model, schema.BuiltinOperator.ARG_MAX, 1, [probabilities, axis], [class_ids])
    argmax.builtinOptionsType = schema.BuiltinOptions.ArgMaxOptions
    argmax.builtinOptions = schema.ArgMaxOptionsT()
    argmax.builtinOptions.outputType = schema.TensorType.INT64
    subgraph.outputs = [int(probabilities), class_ids]
    return probabilities, class_ids


def _retarget_tflite_signatures(model: schema.ModelT, outputs: dict[str, int]) -> None:
    """The converter's own signature table (TFLite's signature runners) names the new outputs."""
    for signature in model.signatureDefs or []:
        signature.outputs = []
        for name, index in outputs.items():
            entry = schema.TensorMapT()
            entry.name, entry.tensorIndex = name.encode(), index
            signature.outputs.append(entry)


def _signature_metadata(model: schema.ModelT) -> None:
    """Store `serving_default` (every input and output by its alias) for TF Serving."""
    subgraph = model.subgraphs[0]
    (inp,) = subgraph.inputs
    signature = SignatureDef(method_name=PREDICT_METHOD)
    signature.inputs[INPUT_ALIAS].CopyFrom(_tensor_info(subgraph.tensors[inp]))
    for index in subgraph.outputs:
        tensor = subgraph.tensors[index]
        signature.outputs[tensor.name.decode()].CopyFrom(_tensor_info(tensor))
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


def serving_model(content: bytes) -> bytes:
    """`content` (one image input, one output of class scores: int8 or float32) answering
    `probabilities` and `class_ids`, with TF Serving's `serving_default` SignatureDef."""
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    subgraph = model.subgraphs[0]
    if len(subgraph.inputs) != 1 or len(subgraph.outputs) != 1:
        raise ValueError("the served TFLite model must have one input and one output")
    probabilities, class_ids = _append_outputs(model)
    _retarget_tflite_signatures(model, {PROBABILITIES: probabilities, CLASS_IDS: class_ids})
    _signature_metadata(model)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
