"""A bounds and size check of a TFLite flatbuffer before any interpreter sees it.

tflite-runtime 2.14 does not verify models: a truncated file crashes the process with a
segmentation fault instead of raising. This walks the parts of the TFLite schema that
hold offsets (model, subgraphs, tensors, operators, buffers) and checks that every
table, vector and buffer lies inside the file, so bad files become clear errors.

It also adds up what the tensors without data (activations) declare: one flipped byte in
a shape can make a 40 kB model ask for 8 GB, which takes a Raspberry Pi down with the
process (and a server with every model it serves) before any error could be raised.
"""

from __future__ import annotations

from fmnist.flatbuffer import Flatbuffer

# Field indices in TFLite's schema.fbs.
_MODEL_VECTORS = {"operator_codes": 1, "subgraphs": 2, "buffers": 4, "metadata": 6}
_SUBGRAPH_VECTORS = {"tensors": 0, "inputs": 1, "outputs": 2, "operators": 3}
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2
_TENSOR_SHAPE, _TENSOR_TYPE, _TENSOR_BUFFER = 0, 1, 2
# Bytes per element of each TensorType (schema order); unknown types count one byte.
_TYPE_BYTES = (4, 2, 4, 1, 8, 1, 1, 2, 8, 1, 8, 16, 8, 1, 1, 4, 2, 1, 2)

# Far above any Fashion-MNIST model (~1 MB of activations at batch 1) and below what a
# Raspberry Pi can allocate: more than this declared by the activations means corruption.
MAX_ACTIVATION_BYTES = 1 << 30


def check_tflite_structure(
    content: bytes, max_activation_bytes: int = MAX_ACTIVATION_BYTES
) -> None:
    """Raise ValueError naming the first out-of-bounds part of a TFLite model, if any, or
    saying how much its activations declare when that is over `max_activation_bytes`."""
    fb = Flatbuffer(content)
    model = fb.root()
    _check_bounds(fb, model)
    declared = _activation_bytes(fb, model)
    if declared > max_activation_bytes:
        raise ValueError(
            f"its activation tensors declare {declared / 2**30:,.1f} GiB, more than the "
            f"{max_activation_bytes / 2**30:g} GiB a model may use here"
        )


def _activation_bytes(fb: Flatbuffer, model: tuple[int, int, int]) -> int:
    """Bytes the tensors without data declare, summed over all subgraphs (dynamic
    dimensions, -1, count as 1)."""
    with_data = [
        fb.vector(entry, _BUFFER_DATA, 1)[1] > 0 or fb.u64(entry, _BUFFER_OFFSET) > 1
        for entry in fb.tables(model, _MODEL_VECTORS["buffers"])
    ]
    total = 0
    for subgraph in fb.tables(model, _MODEL_VECTORS["subgraphs"]):
        for tensor in fb.tables(subgraph, _SUBGRAPH_VECTORS["tensors"]):
            buffer = fb.scalar(tensor, _TENSOR_BUFFER, "<I")
            if buffer < len(with_data) and with_data[buffer]:
                continue
            kind = fb.scalar(tensor, _TENSOR_TYPE, "<b")
            size = _TYPE_BYTES[kind] if 0 <= kind < len(_TYPE_BYTES) else 1
            for dim in fb.ints(tensor, _TENSOR_SHAPE):
                size = min(size * max(1, dim), 1 << 62)  # a corrupt rank must not overflow
            total += size
    return total


def _check_bounds(fb: Flatbuffer, model: tuple[int, int, int]) -> None:
    content = fb.b
    for name, index in _MODEL_VECTORS.items():
        for entry in fb.tables(model, index):
            if name == "subgraphs":
                for vector_index in _SUBGRAPH_VECTORS.values():
                    fb.vector(entry, vector_index, 4)
                for sub in fb.tables(entry, _SUBGRAPH_VECTORS["tensors"]):
                    fb.table(sub[0])
                for sub in fb.tables(entry, _SUBGRAPH_VECTORS["operators"]):
                    fb.table(sub[0])
            elif name == "buffers":
                fb.vector(entry, _BUFFER_DATA, 1)
                offset, size = fb.u64(entry, _BUFFER_OFFSET), fb.u64(entry, _BUFFER_SIZE)
                if offset > 1 and offset + size > len(content):
                    raise ValueError(f"buffer data at {offset} (+{size}) is past the end")
