"""The gRPC port: a `grpc.aio` server on its own event-loop thread, where a stalled client
costs a coroutine. Methods take a streaming request so that this module reads it: at
shutdown, a call still waiting for its request is answered UNAVAILABLE at once instead of
holding the graceful stop; calls whose request arrived finish within the grace. The bytes
go to the method's handler on the loop (where its work runs is the data plane's choice).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import grpc
import grpc.aio

from fmnist.serving.server.transport import event_loop
from fmnist.serving.server.transport.methods import Method
from fmnist.serving.server.transport.ports import address
from fmnist.serving.wire import messages as pb
from fmnist.serving.wire.status import StatusError, internal_bug

log = logging.getLogger(__name__)
_MESSAGE_LIMIT = 1024  # TF Serving truncates gRPC error messages here, keeping trailers small
Status = pb.HealthCheckResponse


class BindError(Exception):
    """The gRPC port could not be bound (gRPC does not say why)."""


class SocketBindError(BindError):
    """The --grpc_socket_path UNIX socket could not be bound."""


class GrpcServer:
    """Services (service name -> method name -> Method) and, optionally, the standard
    health service on host:port."""

    def __init__(
        self,
        services: Mapping[str, Mapping[str, Method]],
        *,
        host: str,
        port: int,
        max_message_bytes: int,
        health_check: bool = False,
        socket_path: str | None = None,
        channel_arguments: Iterable[tuple[str, int | str]] = (),
        reuse_port: bool = False,
    ):
        self.services = dict(services)
        self.address = address(host, port)
        self.socket_path = socket_path  # also listen on unix:PATH, as TF Serving does
        self.channel_arguments = list(channel_arguments)
        self.reuse_port = reuse_port  # SO_REUSEPORT: sibling processes share the port
        self.max_message_bytes = max_message_bytes
        self.health = HealthService(("", *self.services)) if health_check else None
        self._loop: event_loop.LoopThread | None = None
        self._server: grpc.aio.Server | None = None
        self._closing = False
        self._receiving: set[asyncio.Task] = set()  # calls still waiting for their request
        self._stopping: concurrent.futures.Future | None = None

    # --- life cycle (called from any thread) ---------------------------------------------

    def start(self) -> int:
        """Bind (TCP, and the UNIX socket if any) and start; returns the bound TCP port."""
        self._loop = event_loop.LoopThread("grpc-loop")
        try:
            return self._loop.run(self._start()).result()
        except BaseException:
            self._loop.stop()
            self._loop = None
            raise

    def stop(self, grace: float) -> concurrent.futures.Future:
        """Idempotent: a second call returns the first call's future."""
        if self._stopping is None and self._loop is None:  # never started
            self._stopping = concurrent.futures.Future()
            self._stopping.set_result(None)
        elif self._stopping is None:
            self._stopping = self._loop.run(self._stop(grace))
            self._stopping.add_done_callback(lambda _: self._loop.stop())
        return self._stopping

    # --- on the loop thread ----------------------------------------------------------------

    async def _start(self) -> int:
        options = {
            "grpc.max_receive_message_length": self.max_message_bytes,
            "grpc.max_send_message_length": -1,
            # A second server on the port must fail to bind, unless it is a sibling process.
            "grpc.so_reuseport": int(self.reuse_port),
        }
        # --grpc_channel_arguments override ours, as TF Serving's builder applies them after
        # its own settings (deduplicated here: gRPC's pick among repeated keys is unspecified).
        options.update(self.channel_arguments)
        self._server = grpc.aio.server(options=list(options.items()))
        handlers = [
            grpc.method_handlers_generic_handler(
                service, {name: self._handler(method) for name, method in methods.items()}
            )
            for service, methods in self.services.items()
        ]
        if self.health is not None:
            handlers.append(self._health_handler())
        self._server.add_generic_rpc_handlers(handlers)
        port = self._bind(self.address, BindError)
        if self.socket_path:
            self._bind(f"unix:{self.socket_path}", SocketBindError)
        await self._server.start()
        return port

    def _bind(self, where: str, error: type[BindError]) -> int:
        """The port bound at `where`; `error` if it cannot be bound."""
        try:
            port = self._server.add_insecure_port(where)
        except RuntimeError as err:  # gRPC's "Failed to bind to address ..."
            raise error(str(err)) from None
        if not port:
            raise error(f"Failed to bind to address {where}")
        return port

    async def _stop(self, grace: float) -> None:
        """See the module docstring (gRPC cancels calls left after `grace`)."""
        if self.health is not None:
            self.health.closing.set()
        self._closing = True
        for waiting in list(self._receiving):
            waiting.cancel()  # _receive answers it UNAVAILABLE
        await self._server.stop(grace)

    async def _receive(self, context: grpc.aio.ServicerContext) -> bytes:
        """The call's request message (shutdown cancels the tasks still reading one)."""
        task = asyncio.current_task()
        try:
            if self._closing:
                raise asyncio.CancelledError
            self._receiving.add(task)
            raw = await context.read()
        except asyncio.CancelledError:
            if not self._closing:
                raise  # the client went away
            await context.abort(grpc.StatusCode.UNAVAILABLE, "Server is shutting down")
        finally:
            self._receiving.discard(task)
        if raw is grpc.aio.EOF:  # the client half-closed without a message
            await context.abort(grpc.StatusCode.INTERNAL, "No request message")
        return raw

    async def _unary(self, method: Method, context: grpc.aio.ServicerContext) -> Any:
        raw = await self._receive(context)
        if method.call is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")
        left = context.time_remaining()
        answer = method.call(raw, None if left is None else time.monotonic() + left)
        del raw  # the handler parses it and lets it go: a request at the size limit is big
        try:
            return await answer
        except StatusError as err:
            error = err
        except Exception:  # a bug outside the data plane (which answers only StatusError)
            log.exception("gRPC %s failed", method.request.DESCRIPTOR.name)
            error = internal_bug()
        message = error.message
        if len(message) > _MESSAGE_LIMIT:
            message = message[:_MESSAGE_LIMIT] + "...TRUNCATED"
        await context.abort(grpc.StatusCode[error.code.name], message)

    def _handler(self, method: Method) -> grpc.RpcMethodHandler:
        async def unary(_requests, context: grpc.aio.ServicerContext) -> Any:
            return await self._unary(method, context)

        # Requests stay bytes here: the method's handler parses them where the data plane says.
        return grpc.stream_unary_rpc_method_handler(unary, None, method.response.SerializeToString)

    def _health_handler(self) -> grpc.GenericRpcHandler:
        health = self.health

        async def check(_requests, context):
            request = pb.HealthCheckRequest.FromString(await self._receive(context))
            if request.service not in health.services:
                await context.abort(grpc.StatusCode.NOT_FOUND)  # as grpc_health answers
            return Status(status=health.status(request.service))

        async def watch(_requests, context):
            request = pb.HealthCheckRequest.FromString(await self._receive(context))
            await health.watch(request.service, context.write)

        serialize = Status.SerializeToString
        return grpc.method_handlers_generic_handler(
            pb.HEALTH_SERVICE,
            {
                "Check": grpc.stream_unary_rpc_method_handler(check, None, serialize),
                "Watch": grpc.stream_stream_rpc_method_handler(watch, None, serialize),
            },
        )


class HealthService:
    """The standard health service's state: SERVING until shutdown, then NOT_SERVING, and
    every Watch stream ends, as gRPC's C++ servers do (grpc_health's aio servicer keeps
    them open, holding a graceful stop)."""

    def __init__(self, services: Iterable[str]):
        self.services = set(services)
        self.closing = asyncio.Event()

    def status(self, service: str) -> int:
        if service not in self.services:
            return Status.SERVICE_UNKNOWN
        return Status.NOT_SERVING if self.closing.is_set() else Status.SERVING

    async def watch(self, service: str, write: Callable[[Any], Any]) -> None:
        """Send the service's status, then its change at shutdown, and end."""
        status = self.status(service)
        await write(Status(status=status))
        await self.closing.wait()
        if self.status(service) != status:
            await write(Status(status=self.status(service)))
