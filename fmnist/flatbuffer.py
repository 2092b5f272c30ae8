"""A bounds-checked reader of flatbuffers, the format of TFLite models.

Shared by the edge runner's model check and the TFLite servable's SignatureDef reader: both
read untrusted files, so every offset is checked against the content before use.
"""

from __future__ import annotations

import struct


class Flatbuffer:
    """Checked reads of a flatbuffer: every table, vector and scalar is bounds-checked
    against the content, so a damaged file raises ValueError instead of reading garbage."""

    def __init__(self, content: bytes) -> None:
        self.b = content

    def u32(self, pos: int) -> int:
        if pos < 0 or pos + 4 > len(self.b):
            raise ValueError(f"offset {pos} outside the {len(self.b)}-byte file")
        return struct.unpack_from("<I", self.b, pos)[0]

    def root(self) -> tuple[int, int, int]:
        """The root table (the first 4 bytes hold its offset)."""
        return self.table(self.u32(0))

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
        start = where + self.u32(where)
        length = self.u32(start)
        if start + 4 + length * element_size > len(self.b):
            raise ValueError(f"vector at {start} ({length} elements) runs past the end")
        return start + 4, length

    def tables(self, table: tuple[int, int, int], index: int) -> list[tuple[int, int, int]]:
        start, length = self.vector(table, index, 4)
        return [self.table(start + 4 * i + self.u32(start + 4 * i)) for i in range(length)]

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
