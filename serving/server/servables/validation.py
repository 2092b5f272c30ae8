"""Request tensors checked against the signature before anything runs, and split into chunks.

A tensor of the wrong rank or size can reach a kernel that aborts the whole process (a
oneDNN CHECK), so every input is held to its SignatureDef shape first (no TensorFlow here).
Signatures that declare no dimension larger than 1 (TF Serving's half_plus_two family) are
per-element models that TF Serving feeds any shape; their inputs keep that leniency.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from fmnist.serving.wire.dtypes import check_dims, dtype_name, format_shape
from fmnist.serving.wire.status import Code, StatusError, invalid_argument

K = TypeVar("K", bound=Hashable)

CHUNK_ROWS = 256  # batch rows per session run: bounds the model's intermediate tensors
CHUNK_BYTES = 256 << 10  # ... or more rows, while they hold at most this many input bytes

Shape = tuple[int, ...]


@dataclass(frozen=True)
class TensorSpec:
    """A signature tensor's alias and declared shape (None: unknown rank; -1: any size)."""

    alias: str
    shape: Shape | None

    @classmethod
    def from_tensor_info(cls, alias: str, info: Any) -> TensorSpec:
        """From a SignatureDef TensorInfo (duck-typed: `.tensor_shape.unknown_rank/.dim`)."""
        tensor_shape = info.tensor_shape
        if tensor_shape.unknown_rank:
            return cls(alias, None)
        return cls(alias, tuple(int(d.size) for d in tensor_shape.dim))

    @functools.cached_property  # (specs live as long as their model: computed once)
    def enforced(self) -> bool:
        """Whether requests are held to this shape (see the module docstring)."""
        return self.shape is not None and any(d > 1 for d in self.shape)

    @functools.cached_property
    def batched(self) -> bool:
        """Whether dimension 0 is a free batch dimension, so the tensor may be split along it."""
        return self.shape is not None and len(self.shape) >= 1 and self.shape[0] == -1


def conforms(spec: TensorSpec, shape: Sequence[int]) -> bool:
    """TF's IsCompatibleWith: same rank and every fixed dimension equal (unknown rank: any)."""
    if spec.shape is None:
        return True
    if len(spec.shape) != len(shape):
        return False
    return all(want in (-1, got) for want, got in zip(spec.shape, shape, strict=True))


def check_shape(signature_name: str, spec: TensorSpec, shape: Sequence[int]) -> None:
    """An input's shape against its signature tensor (when that shape is enforced)."""
    check_dims(shape)
    if spec.enforced and not conforms(spec, shape):
        raise invalid_argument(
            f"signature {signature_name} input '{spec.alias}' shape is wrong, expected: "
            f"{format_shape(spec.shape)}, actual: {format_shape(shape)}"
        )


def check_inputs(
    signature_name: str, specs: Mapping[str, TensorSpec], shapes: Mapping[str, Sequence[int]]
) -> None:
    """Every given input's shape against its spec (names are checked by the caller)."""
    for alias in sorted(shapes):
        if alias in specs:
            check_shape(signature_name, specs[alias], shapes[alias])


def batch_rows(
    specs: Mapping[str, TensorSpec],
    shapes: Mapping[str, Sequence[int]],
    outputs: Sequence[TensorSpec] = (),
) -> int | None:
    """The batch size to split a run along (every input and output declared `[-1, ...]`,
    every input of the same dim 0), or None when it must run whole."""
    if not shapes or set(shapes) != set(specs):
        return None
    if not all(specs[a].batched for a in shapes):
        return None
    if any(s.shape is not None and not s.batched for s in outputs):
        return None
    sizes = {shape[0] if len(shape) else None for shape in shapes.values()}
    if len(sizes) != 1 or None in sizes:
        return None
    return sizes.pop()


def empty_output_shape(spec: TensorSpec) -> Shape | None:
    """An output's shape for a zero-row batch (`[-1, 10]` -> `(0, 10)`), None if not fixed."""
    if spec.shape is None or not spec.batched or any(d < 0 for d in spec.shape[1:]):
        return None
    return (0, *spec.shape[1:])


def chunk_rows(rows: int, input_bytes: int) -> int:
    """Rows per run: CHUNK_ROWS, or more while a chunk's inputs fit in CHUNK_BYTES."""
    per_row = max(input_bytes // max(rows, 1), 1)
    return max(CHUNK_ROWS, CHUNK_BYTES // per_row)


def chunks(rows: int, size: int = CHUNK_ROWS) -> Iterator[tuple[int, int]]:
    """`[start, stop)` bounds covering `rows` in pieces of at most `size`."""
    if size < 1:
        raise ValueError(f"chunk size must be positive, got {size}")
    for start in range(0, rows, size):
        yield start, min(start + size, rows)


# --- what every loader checks and how it runs a batch (SavedModel and TFLite alike) -------


def check_input_names(
    inputs: Mapping[str, Any], expected: Mapping[str, Any], defaults: Mapping[str, Any] = {}
) -> None:
    """The request names exactly the signature's inputs (but those with a default)."""
    missing = set(expected) - set(inputs) - set(defaults)
    extra = set(inputs) - set(expected)
    if missing or extra:
        sent, wanted = ",".join(sorted(inputs)), ",".join(sorted(expected))
        raise invalid_argument(
            f"input size does not match signature: {len(inputs)}!={len(expected)} "
            f"len({{{sent}}}) != len({{{wanted}}}). Sent extra: {{{','.join(sorted(extra))}}}. "
            f"Missing but required: {{{','.join(sorted(missing))}}}."
        )


def check_dtype(alias: str, actual: int, expected: int) -> None:
    if actual != expected:
        raise invalid_argument(
            f"input '{alias}' is {dtype_name(actual)} but the signature "
            f"expects {dtype_name(expected)}"
        )


def output_aliases(outputs: Mapping[str, Any], output_filter: Sequence[str]) -> list[str]:
    """The outputs a request asks for (all when `output_filter` is empty), in its order."""
    if not output_filter:
        return list(outputs)
    seen: list[str] = []
    for alias in output_filter:
        if alias not in outputs:
            raise invalid_argument(
                f"output tensor alias not found in signature: {alias} Outputs expected to be "
                f"in the set {{{','.join(sorted(outputs))}}}."
            )
        if alias in seen:
            raise invalid_argument(f"duplicate output tensor alias: {alias}")
        seen.append(alias)
    return seen


def check_deadline(deadline: float | None, done: int = 0, rows: int | None = None) -> None:
    """DEADLINE_EXCEEDED once `deadline` (a `time.monotonic()` value) has passed."""
    if deadline is not None and time.monotonic() >= deadline:
        progress = f" after {done} of {rows} rows" if done else ""
        raise StatusError(Code.DEADLINE_EXCEEDED, f"Deadline Exceeded{progress}")


def run_in_chunks(
    run: Callable[[dict[K, np.ndarray]], list[np.ndarray]],
    feeds: Mapping[K, np.ndarray],
    rows: int | None,
    deadline: float | None,
) -> list[np.ndarray]:
    """`run(feeds)`, in chunks along dim 0 when `rows` is every feed's batch size (None: run
    whole), the deadline checked before each; outputs without the batch dim: run whole."""
    size = rows and chunk_rows(rows, sum(v.nbytes for v in feeds.values()))
    if rows is None or rows <= size:
        check_deadline(deadline, 0, rows)
        return run(dict(feeds))
    parts: list[list[np.ndarray]] = []
    for start, stop in chunks(rows, size):
        check_deadline(deadline, start, rows)
        values = run({key: value[start:stop] for key, value in feeds.items()})
        if any(v.ndim == 0 or v.shape[0] != stop - start for v in values):
            check_deadline(deadline, 0, rows)  # an output without the batch dimension
            return run(dict(feeds))
        parts.append(values)
    return [np.concatenate(column) for column in zip(*parts, strict=True)]
