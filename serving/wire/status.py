"""Canonical status codes as TF Serving reports them, and their HTTP mapping, for both sides.

The server raises `StatusError` on every request path; its gRPC layer aborts with the code
and its REST layer answers `{"error": message}` with the HTTP status TF Serving maps from
that code. The client reads the mapping back. No gRPC import: a TFLite-only server on a
Raspberry Pi uses this without grpcio.
"""

from __future__ import annotations

import enum


class Code(enum.IntEnum):
    """The canonical error space (google.rpc.Code; grpc.StatusCode carries the same numbers)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


# TF Serving's canonical-code -> HTTP mapping (model_servers/http_server.cc).
HTTP_STATUS: dict[Code, int] = {
    Code.OK: 200,
    Code.CANCELLED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}

# Reading an HTTP status back: where several codes share one status, the likeliest one.
# 413 is what proxies (and our REST size limit) answer for a body that is too large.
_PREFERRED = (Code.INVALID_ARGUMENT, Code.INTERNAL, Code.ABORTED)
CODE_BY_HTTP: dict[int, Code] = {
    **{status: code for code, status in reversed(HTTP_STATUS.items())},
    **{HTTP_STATUS[code]: code for code in _PREFERRED},
    413: Code.RESOURCE_EXHAUSTED,
}


def code_of_http(status: int) -> Code:
    """The canonical code a TF Serving REST status stands for (UNKNOWN when none does)."""
    return CODE_BY_HTTP.get(status, Code.UNKNOWN)


class StatusError(Exception):
    """A request failed with a canonical status code (never a server bug)."""

    def __init__(self, code: Code, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)

    @classmethod
    def from_number(cls, number: int, message: str) -> StatusError:
        """From a numeric canonical code, e.g. `tf.errors.OpError.error_code`."""
        try:
            return cls(Code(number), message)
        except ValueError:
            return cls(Code.UNKNOWN, message)


def invalid_argument(message: str) -> StatusError:
    return StatusError(Code.INVALID_ARGUMENT, message)


def not_found(message: str) -> StatusError:
    return StatusError(Code.NOT_FOUND, message)


def failed_precondition(message: str) -> StatusError:
    return StatusError(Code.FAILED_PRECONDITION, message)


def unavailable(message: str) -> StatusError:
    return StatusError(Code.UNAVAILABLE, message)


def internal_bug() -> StatusError:
    """What a client is told of a server's bug (its own words stay in the server's log)."""
    return StatusError(Code.INTERNAL, "Internal error (logged by the server)")
