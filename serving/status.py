"""Request errors as TF Serving reports them: a canonical gRPC code, a message, an HTTP status.

Every API path raises `ServingError`; the gRPC layer aborts with its code and the REST
layer answers `{"error": message}` with the HTTP status TF Serving maps from that code.
"""

from __future__ import annotations

import grpc

Code = grpc.StatusCode

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

_BY_NUMBER = {code.value[0]: code for code in Code}


class ServingError(Exception):
    """A request failed with a canonical status code (never a server bug)."""

    def __init__(self, code: Code, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)

    @classmethod
    def from_number(cls, number: int, message: str) -> ServingError:
        """From a numeric canonical code, e.g. `tf.errors.OpError.error_code`."""
        return cls(_BY_NUMBER.get(number, Code.UNKNOWN), message)


def invalid_argument(message: str) -> ServingError:
    return ServingError(Code.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(Code.NOT_FOUND, message)


def failed_precondition(message: str) -> ServingError:
    return ServingError(Code.FAILED_PRECONDITION, message)
