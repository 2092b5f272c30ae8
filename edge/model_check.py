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

import struct

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


class _Flatbuffer:
    def __init__(self, content: bytes) -> None:
        self.b = content

    def _u32(self, pos: int) -> int:
        if pos < 0 or pos + 4 > len(self.b):
            raise ValueError(f"offset {pos} outside the {len(self.b)}-byte file")
        return struct.unpack_from("<I", self.b, pos)[0]

    def table(self, pos: int) -> tuple[int, int, int]:
        """(table position, vtable position, vtable size), all checked."""
        vtable = (
            pos - struct.unpack("<i", self.b[pos : pos + 4])[0] if pos + 4 <= len(self.b) else -1
        )
        if vtable < 0 or vtable + 4 > len(self.b):
            raise ValueError(f"table at {pos} has its vtable outside the file")
        vt_size, table_size = struct.unpack_from("<HH", self.b, vtable)
        if vtable + vt_size > len(self.b) or pos + table_size > len(self.b):
            raise ValueError(f"table at {pos} runs past the end of the file")
        return pos, vtable, vt_size

    def field(self, table: tuple[int, int, int], index: int) -> int | None:
        """Absolute position of a field, or None when it is absent."""
        pos, vtable, vt_size = table
        slot = 4 + 2 * index
        if slot + 2 > vt_size:
            return None
        offset = struct.unpack_from("<H", self.b, vtable + slot)[0]
        return pos + offset if offset else None

    def vector(self, table: tuple[int, int, int], index: int, element_size: int) -> tuple[int, int]:
        """(start, length) of a vector field, checked to lie inside the file."""
        where = self.field(table, index)
        if where is None:
            return 0, 0
        start = where + self._u32(where)
        length = self._u32(start)
        if start + 4 + length * element_size > len(self.b):
            raise ValueError(f"vector at {start} ({length} elements) runs past the end")
        return start + 4, length

    def tables(self, table: tuple[int, int, int], index: int) -> list[tuple[int, int, int]]:
        start, length = self.vector(table, index, 4)
        return [self.table(start + 4 * i + self._u32(start + 4 * i)) for i in range(length)]

    def scalar(self, table: tuple[int, int, int], index: int, fmt: str, default: int = 0) -> int:
        where = self.field(table, index)
        if where is None:
            return default
        if where + struct.calcsize(fmt) > len(self.b):
            raise ValueError(f"field at {where} outside the file")
        return struct.unpack_from(fmt, self.b, where)[0]

    def ints(self, table: tuple[int, int, int], index: int) -> list[int]:
        start, length = self.vector(table, index, 4)
        return list(struct.unpack_from(f"<{length}i", self.b, start))

    def u64(self, table: tuple[int, int, int], index: int) -> int:
        return self.scalar(table, index, "<Q")


def check_tflite_structure(
    content: bytes, max_activation_bytes: int = MAX_ACTIVATION_BYTES
) -> None:
    """Raise ValueError naming the first out-of-bounds part of a TFLite model, if any, or
    saying how much its activations declare when that is over `max_activation_bytes`."""
    fb = _Flatbuffer(content)
    model = fb.table(fb._u32(0))
    _check_bounds(fb, model)
    declared = _activation_bytes(fb, model)
    if declared > max_activation_bytes:
        raise ValueError(
            f"its activation tensors declare {declared / 2**30:,.1f} GiB, more than the "
            f"{max_activation_bytes / 2**30:g} GiB a model may use here"
        )


def _activation_bytes(fb: _Flatbuffer, model: tuple[int, int, int]) -> int:
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


def _check_bounds(fb: _Flatbuffer, model: tuple[int, int, int]) -> None:
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
