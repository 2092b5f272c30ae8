"""The REST port: a Tornado HTTP server on its own event-loop thread.

Each request body is streamed into one buffer with a size limit (413), then given to
`handle`, a coroutine on the loop. The REST timeout counts from the request's headers: at
its deadline the client gets a 504 at once, and the work, which checks the same deadline,
stops. Stopping lets in-flight requests finish, then closes every connection.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import tornado.httpserver
import tornado.iostream
import tornado.netutil
import tornado.web
from tornado.httputil import responses

from fmnist.serving.server.transport import event_loop, http_limits

_CHUNKED_SLACK = 4  # a chunked body may stream this many times the limit before a reset
# (HTTP method, path, body, deadline) -> (HTTP status, JSON body), on the loop; never raises.
Handle = Callable[[str, str, bytearray, float], Awaitable[tuple[int, bytes]]]


class MetricsPage(Protocol):
    """What the metrics path serves (Prometheus' text format)."""

    content_type: str

    def exposition(self) -> bytes: ...


class HttpServer:
    """`handle` for every /v1/ path (and Prometheus metrics) on host:port."""

    def __init__(
        self,
        handle: Handle,
        *,
        host: str,
        port: int,
        max_body_bytes: int,
        timeout_s: float,
        metrics: MetricsPage | None = None,
        metrics_path: str | None = None,
        reuse_port: bool = False,
    ):
        self.handle, self.host, self.port = handle, host, port
        self.max_body_bytes = max_body_bytes
        self.timeout_s = timeout_s
        self.metrics, self.metrics_path = metrics, metrics_path
        self.reuse_port = reuse_port  # SO_REUSEPORT: sibling processes share the port
        self.in_flight = 0
        self.draining = False
        self._loop: event_loop.LoopThread | None = None
        self._server: tornado.httpserver.HTTPServer | None = None

    def start(self) -> int:
        # OSError if taken (by anything but a sibling process, with reuse_port)
        sockets = tornado.netutil.bind_sockets(self.port, self.host, reuse_port=self.reuse_port)
        self.port = sockets[0].getsockname()[1]
        self._loop = event_loop.LoopThread("rest-loop")
        self._loop.run(self._serve(sockets)).result()
        return self.port

    async def _serve(self, sockets: list) -> None:
        routes = []
        if self.metrics is not None and self.metrics_path:
            routes.append((re.escape(self.metrics_path), _MetricsHandler, {"server": self}))
        routes.append((r".*", _ApiHandler, {"server": self}))
        app = tornado.web.Application(routes, log_function=lambda handler: None)
        self._server = _JsonErrorHTTPServer(
            app,
            max_body_size=self.max_body_bytes * _CHUNKED_SLACK,
            max_header_size=http_limits.HEADER_READ_LIMIT,
            idle_connection_timeout=60,
        )
        self._server.add_sockets(sockets)

    def stop(self, grace_s: float) -> None:
        """Stop accepting, wait up to `grace_s` for in-flight requests, then close everything."""
        if self._loop is None:
            return
        self._loop.run(self._shutdown(grace_s)).result()
        self._loop.stop()

    async def _shutdown(self, grace_s: float) -> None:
        self.draining = True
        self._server.stop()
        deadline = time.monotonic() + grace_s
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await self._server.close_all_connections()


class _JsonErrorHTTPServer(tornado.httpserver.HTTPServer):
    """Tornado's HTTP server, with connections that answer malformed requests in JSON."""

    def handle_stream(self, stream: tornado.iostream.IOStream, address: tuple) -> None:
        # The same connection, nothing read from it yet, in a stream that answers in JSON.
        json_stream = http_limits.JsonErrorStream(
            stream.socket,
            max_buffer_size=self.max_buffer_size,
            read_chunk_size=self.read_chunk_size,
        )
        super().handle_stream(json_stream, address)


class _Handler(tornado.web.RequestHandler):
    def initialize(self, server: HttpServer) -> None:
        self.server = server
        self._counted = self._replied = False
        self._body = bytearray()
        self._size = 0

    def prepare(self):
        self.server.in_flight += 1
        self._counted = True
        self.set_header("Content-Type", "application/json")
        if self.server.draining:
            self.set_header("Connection", "close")
        over = http_limits.limit_error(self.request.uri, list(self.request.headers.get_all()))
        if over is not None:
            self.set_header("Connection", "close")
            self._error(*over)

    def _done(self) -> None:
        if self._counted:
            self._counted = False
            self.server.in_flight -= 1

    def on_finish(self) -> None:
        self._done()

    def on_connection_close(self) -> None:
        self._done()

    def write_error(self, status_code: int, **kwargs) -> None:
        error = kwargs.get("exc_info", (None, None))[1]
        reason = getattr(error, "reason", None) or responses.get(status_code, "Unknown")
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": reason}))

    def _reply(self, status: int, body: bytes) -> None:
        self._replied = True
        self.set_status(status)
        self.finish(body)

    def _error(self, status: int, message: str) -> None:
        self._reply(status, json.dumps({"error": message}).encode())


@tornado.web.stream_request_body
class _ApiHandler(_Handler):
    """Every path but the metrics one: TF Serving answers /v1/...; anything else is 404."""

    def prepare(self):
        self._deadline = time.monotonic() + self.server.timeout_s
        super().prepare()
        if self._replied:
            return
        length = self.request.headers.get("Content-Length", "0")
        if length.isdigit() and int(length) > self.server.max_body_bytes:
            self.set_header("Connection", "close")  # don't read a body we refuse
            self._error(413, self._too_large)

    def data_received(self, chunk: bytes) -> None:
        # One growing buffer (realloc, mremap for big ones): no chunk list joined into a copy.
        self._size += len(chunk)
        if self._size <= self.server.max_body_bytes:
            self._body += chunk
        else:
            self._body = bytearray()  # keep reading to answer, but keep nothing

    @property
    def _too_large(self) -> str:
        return f"Request body exceeds {self.server.max_body_bytes} bytes"

    async def _handle(self) -> None:
        if self._size > self.server.max_body_bytes:
            return self._error(413, self._too_large)
        path = self.request.path
        if not path.lower().startswith("/v1/"):
            return self._error(404, f"Not found: {path}")
        body, self._body = self._body, bytearray()
        work = asyncio.ensure_future(
            self.server.handle(self.request.method, path, body, self._deadline)
        )
        del body
        # At the deadline the client is answered at once; the work, which checks the same
        # deadline, stops at its next check (cancelled, it still lets go of what it holds).
        await asyncio.wait((work,), timeout=max(0.0, self._deadline - time.monotonic()))
        status, answer = work.result() if work.done() else (504, b"")
        work.cancel()  # (nothing, if it is done)
        if status == 504:
            timeout_ms = round(self.server.timeout_s * 1000)
            return self._error(504, f"Request timed out after {timeout_ms} ms")
        self._reply(status, answer)

    # TF Serving answers GET and POST; any other method is a "Malformed request" (400).
    get = post = put = delete = patch = options = head = _handle


class _MetricsHandler(_Handler):
    def get(self) -> None:
        self.set_header("Content-Type", self.server.metrics.content_type)
        self.finish(self.server.metrics.exposition())
