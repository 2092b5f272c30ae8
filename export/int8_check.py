"""Which layer keeps a converted int8 model from being full-integer, in one line.

The converter does not refuse an op without an int8 kernel: it leaves it in float between
a DEQUANTIZE and a QUANTIZE, and the model no longer runs where only integer kernels do
(microcontrollers, NPUs, tflite-runtime's int8 paths). Export refuses such a model and
names the op and the Keras layer it came from (TFLite tensor names carry the layer's name,
`functional_1/odd_layer_1/Sin`). Converter errors get the same treatment.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

from fmnist.errors import UserError

_OP_NAMES = {code: name for name, code in vars(schema.BuiltinOperator).items() if name.isupper()}
# The float boundary ops the converter inserts around float islands and at the model's edges.
_BOUNDARY = {schema.BuiltinOperator.QUANTIZE, schema.BuiltinOperator.DEQUANTIZE}
_FLOATS = {schema.TensorType.FLOAT32, schema.TensorType.FLOAT16}


class NotFullInteger(UserError):
    """An op of the model has no full-integer int8 kernel (or does not convert at all)."""

    def suggest(self, hint: str) -> NotFullInteger:
        return NotFullInteger(f"{self}; {hint}")


def layer_of(tensor_name: str, layer_names: Iterable[str]) -> str | None:
    """The Keras layer a TFLite tensor came from: a path component of its name, as is or
    without the `_N` suffix tracing adds."""
    names = set(layer_names)
    for part in tensor_name.split("/"):
        for candidate in (part, re.sub(r"_\d+$", "", part)):
            if candidate in names:
                return candidate
    return None


def float_ops(content: bytes) -> list[tuple[str, str]]:
    """(op, output tensor name) of every op of a converted model that computes in float."""
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    subgraph, found = model.subgraphs[0], []
    for op in subgraph.operators:
        opcode = model.operatorCodes[op.opcodeIndex]
        code = max(opcode.builtinCode, opcode.deprecatedBuiltinCode)
        tensors = [subgraph.tensors[i] for i in [*op.inputs, *op.outputs] if i >= 0]
        if code not in _BOUNDARY and any(t.type in _FLOATS for t in tensors):
            name = subgraph.tensors[op.outputs[0]].name.decode()
            found.append((_OP_NAMES.get(code, f"op {code}"), name))
    return found


def check_full_integer(content: bytes, layer_names: Iterable[str]) -> None:
    """Refuse an int8 model with a float op, naming the first such op and its layer."""
    ops = float_ops(content)
    if ops:
        op, tensor = ops[0]
        layer = layer_of(tensor, layer_names)
        where = f"layer {layer!r}" if layer else f"tensor {tensor!r}"
        more = f" (and {len(ops) - 1} more)" if len(ops) > 1 else ""
        raise NotFullInteger(f"int8: op {op} in {where} has no full-integer int8 kernel{more}")


def conversion_error(err: Exception, kind: str, layer_names: Iterable[str]) -> NotFullInteger:
    """A converter failure as one line: the op it names and the layer it came from."""
    text = str(err)
    op = re.search(r"'(tfl?\.\w+)' op", text)
    layer = None
    for location in re.findall(r'"([^"@]+)', text):
        layer = layer_of(location, layer_names) or layer
    first = next((line for line in text.splitlines() if "error:" in line), text.splitlines()[0])
    what = f"op {op.group(1)}" if op else first.strip()[:200]
    where = f" in layer {layer!r}" if layer else ""
    return NotFullInteger(f"{kind}: {what}{where} does not convert to TFLite builtins")


def layer_names(model) -> list[str]:
    """Every layer's name, nested models' layers included."""
    names = []
    for layer in model.layers:
        names.append(layer.name)
        if hasattr(layer, "layers"):
            names += layer_names(layer)
    return names
