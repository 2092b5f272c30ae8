"""A unary RPC as the APIs declare it and the gRPC transport serves it; no grpcio import, so
the APIs declare methods where grpcio is missing."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf import message

from fmnist.serving.wire.status import Code, StatusError

log = logging.getLogger(__name__)

# handler(serialized request, deadline) -> the response message; `deadline` is a
# `time.monotonic()` value or None. It raises only StatusError.
Handler = Callable[[bytes, float | None], Awaitable[Any]]


@dataclass(frozen=True)
class Method:
    """One unary method: its message types and its handler, `call` (none: UNIMPLEMENTED)."""

    request: type[message.Message]
    response: type[message.Message]
    call: Handler | None = None


def parse_request(kind: type[message.Message], raw: bytes) -> Any:
    """A serialized request message; INTERNAL, in gRPC's words, if it does not parse."""
    try:
        return kind.FromString(raw)
    except message.DecodeError as err:
        log.debug("a %s that does not parse: %s", kind.DESCRIPTOR.name, err)
        raise StatusError(Code.INTERNAL, "Exception deserializing request!") from None
