"""REST request JSON with bounded memory: numeric arrays go from text straight to numpy.

`loads` parses a body with the standard `json` module, except that every large array of
plain numbers is cut out first and left as a `NumericSpan` (a slice of the body). A span
becomes an ndarray with vectorized numpy passes over its bytes (token checks, the
bracket skeleton compared with the rectangular one its first elements imply, then
`np.fromstring`), a few bytes of memory per body byte instead of a Python list per
number; a small span (one image) is quicker read by orjson and one `np.array` call, under
the same checks. Anything the fast path cannot prove valid is handed back (`None`) so the
caller falls back to the exact, checked Python path and its TF Serving error messages.
Work is done in chunks and checks the request's deadline (a `time.monotonic()` value).
"""

from __future__ import annotations

import json
import math
import re
import secrets
import time
from typing import Any

import numpy as np
import orjson

from fmnist.serving.wire.status import Code, StatusError, invalid_argument

MAX_DEPTH = 64  # numpy's (and so the server's) maximum tensor rank
SPAN_MIN_BYTES = 256  # smaller arrays are cheap as Python lists
SMALL_SPAN_BYTES = 64 << 10  # up to this, orjson and one np.array beat the numpy passes
_CHUNK = 1 << 18  # bytes per vectorized pass: bounds the temporaries
_RUN = re.compile(rb"[\[\]0-9eE.+\-,NaIinfty \t\r\n]{%d,}" % SPAN_MIN_BYTES)
_BRACKET = re.compile(rb"[\[\]]")
_WS = b" \t\r\n"

# Character classes for the vectorized token check (after NaN/Infinity became "1").
_OTHER, _DIGIT, _DOT, _EXP, _PLUS, _MINUS, _LETTER, _SPACE = range(8)
_CLASS = np.full(256, _LETTER, dtype=np.uint8)
_CLASS[list(b"[],")] = _OTHER
_CLASS[list(_WS)] = _SPACE
_CLASS[list(b"0123456789")] = _DIGIT
_CLASS[ord(".")], _CLASS[ord("+")], _CLASS[ord("-")] = _DOT, _PLUS, _MINUS
_CLASS[list(b"eE")] = _EXP
_BRACKETS_TO_SPACES = bytes.maketrans(b"[]", b"  ")


def check_deadline(deadline: float | None) -> None:
    """DEADLINE_EXCEEDED once `deadline` (time.monotonic()) has passed."""
    if deadline is not None and time.monotonic() > deadline:
        raise StatusError(Code.DEADLINE_EXCEEDED, "Request timed out while decoding JSON")


def _parse_int(text: str) -> int | float:
    """JSON integers as TF Serving's parser reads them: beyond 64 bits they are doubles."""
    if len(text) <= 18:
        return int(text)
    if len(text.lstrip("-")) > 310:  # > 1e309: no double holds it (and int() would balk)
        raise invalid_argument("JSON Parse error: Number too big to be stored in double")
    value = int(text)
    if -(2**63) <= value < 2**64:
        return value
    try:
        return float(value)
    except OverflowError:
        raise invalid_argument("JSON Parse error: Number too big to be stored in double") from None


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise invalid_argument("JSON Parse error: Number too big to be stored in double")
    return value


def plain_loads(data: bytes | bytearray | memoryview) -> Any:
    """`json.loads` with TF Serving's number rules (ValueError/StatusError on bad input).
    orjson reads what it accepts the same way (ints beyond 64 bits as doubles), several
    times quicker; the rest (NaN, lone surrogates, errors) gets json's verdict and words."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    if isinstance(data, memoryview):
        data = bytes(data)
    return json.loads(data, parse_int=_parse_int, parse_float=_parse_float)


class NumericSpan:
    """A JSON array of numbers left unparsed: `data[start:stop]`."""

    __slots__ = ("data", "start", "stop")

    def __init__(self, data: bytes | bytearray, start: int, stop: int):
        self.data, self.start, self.stop = data, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __repr__(self) -> str:
        head = bytes(memoryview(self.data)[self.start : min(self.stop, self.start + 40)])
        return f"NumericSpan({head.decode('latin-1')}... {len(self)} bytes)"

    def load(self) -> Any:
        """The span as Python lists (the slow, exact path); a span that is not JSON after
        all (e.g. `[1 2]`) is the request's JSON Parse error, located in the body."""
        try:
            return plain_loads(memoryview(self.data)[self.start : self.stop])
        except json.JSONDecodeError as err:
            raise invalid_argument(
                f"JSON Parse error: {_located(err.msg, self.data, self.start + err.pos)}"
            ) from None

    def to_array(self, dtype: np.dtype, deadline: float | None = None) -> np.ndarray | None:
        """The span as an array of `dtype`, or None when only the exact path can judge it."""
        return _span_to_array(self, np.dtype(dtype), deadline)


def loads(body: bytes | bytearray, deadline: float | None = None) -> Any:
    """Parse a request body; large numeric arrays come back as `NumericSpan`s."""
    spans = list(_find_spans(body, deadline))
    if not spans:
        return plain_loads(body)
    marker = f"@span-{secrets.token_hex(8)}-"
    try:
        doc = plain_loads(_replaced(body, spans, lambda k: b'"%s%d"' % (marker.encode(), k)))
    except ValueError:
        # Either the body is not JSON, or a "span" was text inside a string (the quoted
        # marker then breaks the JSON). With "[]", valid in both places, we can tell.
        try:
            plain_loads(_replaced(body, spans, lambda k: b"[]"))
        except json.JSONDecodeError as err:
            raise _error_in_body(err, body, spans) from None
        return plain_loads(body)  # rare: arrays of numbers as text in a long string
    by_marker = {f"{marker}{k}": NumericSpan(body, a, b) for k, (a, b) in enumerate(spans)}
    return _restore(doc, by_marker)


def _replaced(body: bytes | bytearray, spans: list[tuple[int, int]], placeholder) -> bytes:
    """`body` with span k replaced by `placeholder(k)`."""
    pieces, last = [], 0
    view = memoryview(body)
    for k, (start, stop) in enumerate(spans):
        pieces += [view[last:start], placeholder(k)]
        last = stop
    pieces.append(view[last:])
    return b"".join(pieces)


def _error_in_body(
    err: json.JSONDecodeError, body: bytes | bytearray, spans: list[tuple[int, int]]
) -> ValueError:
    """`err` (from the body with each span replaced by "[]") located in the original body."""
    position = err.pos
    for start, stop in spans:
        if start >= position:
            break
        position += stop - start - 2
    return ValueError(_located(err.msg, body, position))


def _located(message: str, body: bytes | bytearray, position: int) -> str:
    """`message` with the line, column and offset of `position` in the body, as json words it."""
    line = body.count(b"\n", 0, position) + 1
    column = position - (body.rfind(b"\n", 0, position) + 1) + 1
    return f"{message}: line {line} column {column} (char {position})"


def _restore(value: Any, spans: dict[str, NumericSpan]) -> Any:
    stack = [value]
    while stack:
        item = stack.pop()
        entries = item.items() if isinstance(item, dict) else enumerate(item)
        for key, child in list(entries):
            if isinstance(child, str):
                if child in spans:
                    item[key] = spans[child]
            elif isinstance(child, (dict, list)):
                stack.append(child)
    return spans.get(value, value) if isinstance(value, str) else value


def _find_spans(body: bytes | bytearray, deadline: float | None):
    """(start, stop) of balanced arrays of numbers (and nested arrays of them) in `body`."""
    for run in _RUN.finditer(body):
        position, end = run.start(), run.end()
        while True:
            check_deadline(deadline)
            start = body.find(b"[", position, end)
            if start < 0:
                break
            stop = _balanced_end(body, start, end)
            if stop is None:
                break  # the array holds more than numbers: the exact path handles it
            yield start, stop
            position = stop


def _balanced_end(body: bytes | bytearray, start: int, end: int) -> int | None:
    """Index after the `]` closing the `[` at `start`, if within `end` and <= MAX_DEPTH deep."""
    if end - start <= SMALL_SPAN_BYTES:  # a few dozen brackets: quicker one by one
        return _balanced_end_small(body, start, end)
    depth = 0
    for offset in range(start, end, _CHUNK):
        chunk = np.frombuffer(body, np.uint8, min(_CHUNK, end - offset), offset)
        steps = (chunk == ord("[")).astype(np.int16) - (chunk == ord("]"))
        depths = np.cumsum(steps, dtype=np.int32) + depth
        closed = np.flatnonzero(depths == 0)
        limit = depths[: closed[0]] if closed.size else depths
        if limit.size and limit.max() > MAX_DEPTH:
            return None
        if closed.size:
            return offset + int(closed[0]) + 1
        depth = int(depths[-1])
    return None


def _balanced_end_small(body: bytes | bytearray, start: int, end: int) -> int | None:
    depth = 0
    for bracket in _BRACKET.finditer(body, start, end):
        depth += 1 if bracket.group() == b"[" else -1
        if depth > MAX_DEPTH:
            return None
        if depth == 0:
            return bracket.end()
    return None


def _span_to_array(span: NumericSpan, dtype: np.dtype, deadline: float | None) -> np.ndarray | None:
    if dtype.kind not in "fiu":
        return None
    if len(span) <= SMALL_SPAN_BYTES:
        check_deadline(deadline)
        array = _small_span_to_array(span, dtype)
        if array is not None:
            return array
    data, start, stop = span.data, span.start, span.stop
    non_integer = (b".", b"e", b"E", b"N", b"I")
    if dtype.kind in "iu" and any(data.find(c, start, stop) >= 0 for c in non_integer):
        return None  # non-integers for an integer tensor: the exact path words the error
    skeleton = _skeleton(data, start, stop, deadline)
    if skeleton is None:
        return None
    shape = _shape(skeleton)
    if shape is None or len(shape) > MAX_DEPTH or not _is_rectangular(skeleton, shape):
        return None
    del skeleton
    size = math.prod(shape)
    parse_as = np.float64 if dtype.kind == "f" else np.uint64 if dtype == np.uint64 else np.int64
    if parse_as == np.uint64 and data.find(b"-", start, stop) >= 0:
        return None
    out = np.empty(size, dtype=dtype)
    filled = 0
    for text in _chunks(data, start, stop, deadline):
        text = text.translate(_BRACKETS_TO_SPACES).rstrip(b", \t\r\n")
        if not text.strip():
            continue
        try:
            values = np.fromstring(text, dtype=parse_as, sep=",")
        except ValueError:
            return None
        if filled + values.size > size or not _representable(values, dtype, text):
            return None
        out[filled : filled + values.size] = values
        filled += values.size
    if filled != size:
        return None
    return out.reshape(shape)


def _small_span_to_array(span: NumericSpan, dtype: np.dtype) -> np.ndarray | None:
    """A span of a few KB through orjson, quicker than the numpy passes (measured in
    docs/serving.md#serving-speed). A span holds only numbers and brackets, so no booleans or
    nulls can hide in the lists; NaN, Infinity and anything else orjson or numpy refuses
    (ragged, too deep) go on to the vectorized path."""
    try:
        values = orjson.loads(memoryview(span.data)[span.start : span.stop])
        # Floats parse as doubles, as in the vectorized path; ints stay ints so that a
        # fraction or an out-of-range value is seen before the cast.
        parsed = np.array(values, dtype=np.float64 if dtype.kind == "f" else None)
    except (orjson.JSONDecodeError, ValueError, OverflowError, TypeError):
        return None
    if parsed.dtype.kind not in ("f" if dtype.kind == "f" else "iu"):
        return None
    if parsed.ndim > MAX_DEPTH or not _representable(parsed.ravel(), dtype, b""):
        return None
    return parsed.astype(dtype, copy=False)


def _representable(values: np.ndarray, dtype: np.dtype, text: bytes) -> bool:
    """No silent overflow: too-big doubles become inf, and 64-bit ints saturate."""
    if dtype.kind == "f":
        infinite = int(np.isinf(values).sum())
        return infinite == 0 or infinite == text.count(b"Infinity")
    if not values.size:
        return True
    info = np.iinfo(dtype)
    low, high = values.min(), values.max()
    wide = np.iinfo(np.int64)
    if values.dtype == np.int64 and (low == wide.min or high == wide.max):
        return False  # may have saturated: let the exact path decide
    if values.dtype == np.uint64 and high == np.iinfo(np.uint64).max:
        return False
    return info.min <= low and high <= info.max


def _chunks(data: bytes | bytearray, start: int, stop: int, deadline: float | None):
    """~_CHUNK-byte pieces of data[start:stop], cut just after a comma (never inside a token)."""
    position = start
    while position < stop:
        check_deadline(deadline)
        cut = data.find(b",", min(position + _CHUNK, stop), stop)
        cut = stop if cut < 0 else cut + 1
        yield bytes(memoryview(data)[position:cut])
        position = cut


def _skeleton(
    data: bytes | bytearray, start: int, stop: int, deadline: float | None
) -> bytes | None:
    """The span with whitespace dropped and each number turned into `n`; None if a token is
    not a JSON number (leading zeros, a bare dot or sign, stray letters)."""
    parts = []
    for text in _chunks(data, start, stop, deadline):
        if b"-NaN" in text:
            return None  # json (the exact path) has no negative NaN; let it word the error
        # NaN and (-)Infinity are numbers too: as digit runs one rule set covers them.
        text = text.replace(b"Infinity", b"11111111").replace(b"NaN", b"111")
        classes = _CLASS[np.frombuffer(text, np.uint8)]
        if not _tokens_ok(classes, text):
            return None
        numeric = (classes != _OTHER) & (classes != _SPACE)
        starts = numeric.copy()
        starts[1:] &= ~numeric[:-1]
        keep = (classes == _OTHER) | starts
        chars = np.frombuffer(text, np.uint8)[keep]
        chars[starts[keep]] = ord("n")
        parts.append(chars.tobytes())
    return b"".join(parts)


def _tokens_ok(cls: np.ndarray, text: bytes) -> bool:
    """Vectorized JSON number grammar, -?(0|[1-9]d*)(.d+)?([eE][+-]?d+)?, over one chunk
    (which starts after a comma or at the span's start, so its edges are boundaries)."""
    if np.any(cls == _LETTER):
        return False
    edge = np.array([_OTHER], dtype=np.uint8)
    prev = np.concatenate([edge, cls[:-1]])
    prev2 = np.concatenate([edge, prev[:-1]])
    nxt = np.concatenate([cls[1:], edge])
    digit_prev, digit_next = prev == _DIGIT, nxt == _DIGIT
    boundary = (prev == _OTHER) | (prev == _SPACE)
    checks = (
        (cls == _DOT) & ~(digit_prev & digit_next),
        (cls == _EXP) & ~(digit_prev & (digit_next | (nxt == _PLUS) | (nxt == _MINUS))),
        (cls == _PLUS) & ~((prev == _EXP) & digit_next),
        (cls == _MINUS) & ~((boundary | (prev == _EXP)) & digit_next),
    )
    if any(np.any(c) for c in checks):
        return False
    # A leading zero followed by a digit: "01", "-01" (but "10", "0.01", "1e01" are fine).
    zeros = np.frombuffer(text, np.uint8) == ord("0")
    at_start = boundary | ((prev == _MINUS) & ((prev2 == _OTHER) | (prev2 == _SPACE)))
    return not np.any(zeros & digit_next & at_start)


def _shape(skeleton: bytes) -> list[int] | None:
    """The shape the first element at each level implies (as TF Serving reads it)."""
    rank = len(skeleton) - len(skeleton.lstrip(b"["))
    if rank == 0:
        return None
    shape = []
    for level in range(1, rank + 1):
        # The first list at `level` starts at index level-1 and ends at the first run of
        # (rank - level + 1) closing brackets; its elements are separated by "],[" at the
        # right depth (or plain commas for the innermost level).
        inner = rank - level
        close = b"]" * (inner + 1)
        end = skeleton.find(close, level - 1)
        if end < 0:
            return None
        body = skeleton[level : end + inner]
        if not body:
            shape.append(0)
            break
        separator = b"]" * inner + b"," + b"[" * inner
        shape.append(body.count(separator) + 1)
    shape += [0] * (rank - len(shape))
    return shape


def _is_rectangular(skeleton: bytes, shape: list[int]) -> bool:
    """Whether `skeleton` is exactly that of a rectangular array of `shape`.

    It is "[" + (T ",") * (n - 1) + T + "]" for the skeleton T of one element; compared a
    block of many T's at a time, so the expected text never exists whole (unless T alone
    is large, e.g. shape [2, 10**7])."""
    if len(shape) == 1 or 0 in shape:
        return skeleton == _expected_skeleton(shape)
    item = _expected_skeleton(shape[1:])
    if len(item) > _CHUNK:
        return skeleton == _expected_skeleton(shape)
    count = shape[0]
    if len(skeleton) != 2 + count * (len(item) + 1) - 1 or skeleton[:1] != b"[":
        return False
    per_block = max(1, _CHUNK // (len(item) + 1))
    block = (item + b",") * per_block
    view = memoryview(skeleton)
    position, left = 1, count - 1  # the last element is followed by "]", not ","
    while left > 0:
        take = min(per_block, left)
        size = take * (len(item) + 1)
        if view[position : position + size] != (block if take == per_block else block[:size]):
            return False
        position, left = position + size, left - take
    return view[position:] == item + b"]"


def _expected_skeleton(shape: list[int]) -> bytes:
    """The skeleton of a rectangular array of `shape` (numbers as `n`)."""
    if any(d == 0 for d in shape):
        zero = shape.index(0)
        item = b"[]"
        for size in reversed(shape[:zero]):
            item = b"[" + (item + b",") * (size - 1) + item + b"]"
        return item
    item = b"n"
    for size in reversed(shape):
        item = b"[" + (item + b",") * (size - 1) + item + b"]"
    return item
