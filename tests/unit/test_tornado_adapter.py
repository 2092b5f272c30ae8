"""The one place the REST transport leans on Tornado beyond its documented API:
`http_limits.JsonErrorStream` relies on how Tornado's HTTP/1 connection reads a header block
(`read_until_regex`, closing with UnsatisfiableReadError past `max_header_size`) and on the
bytes of its bare 400. These run a real HttpServer on loopback, in this process, so a
Tornado release that changes any of that fails here, at unit-test speed."""

from __future__ import annotations

import contextlib
import json
import socket

import pytest

from fmnist.serving.server.transport.http_limits import HEADER_READ_LIMIT
from fmnist.serving.server.transport.http_server import HttpServer


async def _ok(_method: str, _path: str, _body: bytearray, _deadline: float):
    return 200, b'{"ok":true}'


@pytest.fixture(scope="module")
def port():
    server = HttpServer(_ok, host="127.0.0.1", port=0, max_body_bytes=1 << 20, timeout_s=10)
    yield server.start()
    server.stop(0)


def _exchange(port: int, request: bytes) -> tuple[int, dict]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        # The server may answer and stop reading before all is sent: its answer still counts.
        with contextlib.suppress(OSError):
            sock.sendall(request)
        answer = b""
        while chunk := sock.recv(1 << 16):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),  # Tornado's bare 400, rewritten
        (b"GET /" + b"a" * (HEADER_READ_LIMIT + 10) + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * (HEADER_READ_LIMIT + 10) + b"\r\n\r\n", 431),
    ],
    ids=["malformed", "request-line-past-tornados-limit", "headers-past-tornados-limit"],
)
def test_what_tornado_rejects_is_answered_in_json(port: int, request_bytes: bytes, status: int):
    got, body = _exchange(port, request_bytes)
    assert got == status
    assert isinstance(body["error"], str)


def test_a_good_request_still_reaches_the_handler(port: int):
    assert _exchange(port, b"GET /v1/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") == (
        200,
        {"ok": True},
    )
