"""JSON answers for HTTP requests Tornado rejects before any handler sees them.

Tornado answers a malformed request with a bare `400`, and drops the connection when the
header block outgrows `max_header_size`. `JsonErrorStream` (every connection's stream)
rewrites the bare 400 and answers an over-long header block with 414 or 431, then drains
the rest (bounded) on a helper thread so that closing does not reset the connection.
Header blocks between `MAX_HEADER_BYTES` and Tornado's limit are refused by `limit_error`.
It uses IOStream's public methods only, but relies on how Tornado's HTTP/1 connection uses
them (headers read with `read_until_regex`, `_BARE_400`): tests/unit/test_tornado_adapter.py.
"""

from __future__ import annotations

import json
import socket
import threading
import time

from tornado import iostream

MAX_URL_BYTES = 64 * 1024  # request line
MAX_HEADER_BYTES = 64 * 1024  # request line and header fields together
HEADER_READ_LIMIT = 1 << 20  # Tornado's max_header_size: beyond it, JsonErrorStream answers
_BARE_400 = b"HTTP/1.1 400 Bad Request\r\n\r\n"  # what tornado.http1connection writes
_REASONS = {400: "Bad Request", 414: "URI Too Long", 431: "Request Header Fields Too Large"}
_DRAIN_SECONDS, _DRAIN_BYTES = 2.0, 16 << 20
_DRAINERS = threading.BoundedSemaphore(16)  # lingering closes at once; beyond: plain close


def error_response(status: int, message: str) -> bytes:
    """A complete HTTP/1.1 response carrying `{"error": message}`, closing the connection."""
    body = json.dumps({"error": message}).encode()
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


def limit_error(uri: str, header_lines: list[tuple[str, str]]) -> tuple[int, str] | None:
    """(status, message) when a parsed request is over the URL or header size limits."""
    if len(uri) > MAX_URL_BYTES:
        return 414, f"Request URI of {len(uri)} bytes exceeds the limit of {MAX_URL_BYTES}"
    size = len(uri) + sum(len(name) + len(value) + 4 for name, value in header_lines)
    if size > MAX_HEADER_BYTES:
        return 431, f"Request headers of {size} bytes exceed the limit of {MAX_HEADER_BYTES}"
    return None


def oversized_header_error(buffered: bytes) -> tuple[int, str]:
    """414 or 431 for a header block Tornado gave up reading, from its first bytes."""
    if b"\n" not in buffered[: MAX_URL_BYTES + 2]:
        return 414, f"Request URI exceeds the limit of {MAX_URL_BYTES} bytes"
    return 431, f"Request headers exceed the limit of {MAX_HEADER_BYTES} bytes"


class JsonErrorStream(iostream.IOStream):
    """An IOStream whose server-side errors are answered in JSON (see the module doc)."""

    _reading_headers = False
    _head = b""  # the first bytes received while reading the current header block

    def read_until_regex(self, regex: bytes, max_bytes: int | None = None):
        self._reading_headers, self._head = True, b""  # how Tornado reads a header block
        return super().read_until_regex(regex, max_bytes)

    def read_from_fd(self, buf: bytearray | memoryview) -> int | None:
        count = super().read_from_fd(buf)
        if count and self._reading_headers and len(self._head) <= MAX_URL_BYTES:
            self._head += bytes(buf[: min(count, MAX_URL_BYTES + 2 - len(self._head))])
        return count

    def read_until(self, delimiter: bytes, max_bytes: int | None = None):
        self._reading_headers = False
        return super().read_until(delimiter, max_bytes)

    def read_bytes(self, num_bytes: int, partial: bool = False):
        self._reading_headers = False
        return super().read_bytes(num_bytes, partial)

    def write(self, data, *args, **kwargs):
        if bytes(data) == _BARE_400:
            data = error_response(400, "Malformed HTTP request")
        return super().write(data, *args, **kwargs)

    def close(self, exc_info=False) -> None:
        error = exc_info[1] if isinstance(exc_info, tuple) else exc_info
        if (
            isinstance(error, iostream.UnsatisfiableReadError)
            and self._reading_headers
            and not self.closed()
        ):
            self._answer_and_linger(error_response(*oversized_header_error(self._head)))
        super().close(exc_info)

    def _answer_and_linger(self, response: bytes) -> None:
        """Send `response`, then drain the client's unread bytes before the socket closes."""
        try:
            sock = self.socket.dup()  # keeps the connection open after Tornado's close
        except OSError:
            return
        if not _DRAINERS.acquire(blocking=False):
            sock.close()
            return
        threading.Thread(target=_drain, args=(sock, response), daemon=True).start()


def _drain(sock: socket.socket, response: bytes) -> None:
    try:
        sock.settimeout(_DRAIN_SECONDS)
        sock.sendall(response)
        sock.shutdown(socket.SHUT_WR)
        received, until = 0, time.monotonic() + _DRAIN_SECONDS
        while received < _DRAIN_BYTES and time.monotonic() < until:
            data = sock.recv(1 << 16)
            if not data:
                break
            received += len(data)
    except OSError:
        pass
    finally:
        sock.close()
        _DRAINERS.release()
