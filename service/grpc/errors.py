"""Argos' errors as gRPC statuses: the same message as over HTTP, the status mapped."""

from __future__ import annotations

import grpc

from service.errors import ArgosError, ServiceUnavailable

RETRY_AFTER = "retry-after"
"""Trailing metadata of an ``UNAVAILABLE`` reply: seconds to wait, as HTTP's Retry-After."""

_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
}


def status_code(error: ArgosError) -> grpc.StatusCode:
    """The gRPC status of an error whose HTTP status is ``error.status_code``."""
    return _CODES.get(error.status_code, grpc.StatusCode.INVALID_ARGUMENT)


def trailing_metadata(error: ArgosError) -> tuple[tuple[str, str], ...]:
    """What the reply carries besides its status: the retry delay of an unavailable server."""
    if isinstance(error, ServiceUnavailable):
        return ((RETRY_AFTER, str(error.retry_after_s)),)
    return ()
