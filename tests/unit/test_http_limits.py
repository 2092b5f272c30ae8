"""The REST server's HTTP size limits and its JSON error responses (pure logic: no
TensorFlow, no processes; the real server is tested in tests/serving/test_server_faults.py)."""

from __future__ import annotations

import json

import pytest

from fmnist.serving.server.transport import http_limits
from fmnist.serving.server.transport.http_limits import MAX_HEADER_BYTES, MAX_URL_BYTES


@pytest.mark.parametrize(
    ("uri", "headers", "status"),
    [
        ("/v1/models/m", [("Host", "x")], None),
        ("/" + "a" * (MAX_URL_BYTES - 1), [], None),
        ("/" + "a" * MAX_URL_BYTES, [], 414),
        ("/v1", [("X", "a" * (MAX_HEADER_BYTES - 20))], None),
        ("/v1", [("X", "a" * MAX_HEADER_BYTES)], 431),
        ("/v1", [("X", "a" * 1000)] * 70, 431),  # many fields add up
    ],
)
def test_limit_error(uri: str, headers: list[tuple[str, str]], status: int | None):
    error = http_limits.limit_error(uri, headers)
    assert (error[0] if error else None) == status


@pytest.mark.parametrize(
    ("buffered", "status"),
    [
        (b"GET /" + b"a" * (MAX_URL_BYTES + 10), 414),  # the request line never ended
        (b"GET / HTTP/1.1\r\nX: " + b"a" * (MAX_HEADER_BYTES + 10), 431),
    ],
)
def test_oversized_header_error(buffered: bytes, status: int):
    assert http_limits.oversized_header_error(buffered)[0] == status


@pytest.mark.parametrize("status", [400, 414, 431])
def test_error_response_is_complete_http_with_a_json_body(status: int):
    response = http_limits.error_response(status, 'bad "thing"')
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert lines[0].startswith(f"HTTP/1.1 {status} ")
    assert headers["Content-Type"] == "application/json"
    assert int(headers["Content-Length"]) == len(body)
    assert headers["Connection"] == "close"
    assert json.loads(body) == {"error": 'bad "thing"'}
