"""Failures on ``/v2`` in the protocol's shape: ``{"error": "..."}`` with a 4xx status.

The protocol answers a bad request with 400 (Triton maps every invalid argument there),
an unknown model or version with 404, and an overloaded server with 503. Argos' own
errors keep their message; their status is mapped onto that set.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError

from service import metrics
from service.errors import ArgosError

_PROTOCOL_STATUS = {415: 400, 422: 400}
"""Argos statuses the protocol does not use → the status it does (anything else is kept)."""


class InvalidTensor(ArgosError, status=400, code="invalid_tensor"):
    """A request body, tensor or parameter that does not follow the protocol."""


class UnknownEndpoint(ArgosError, status=404, code="unknown_endpoint"):
    """A path under ``/v2`` that the protocol does not define."""


def protocol_status(error: ArgosError) -> int:
    """The HTTP status of ``error`` on the ``/v2`` routes."""
    return _PROTOCOL_STATUS.get(error.status_code, error.status_code)


def error_reply(error: ArgosError) -> JSONResponse:
    """``{"error": detail}`` with the protocol's status (and any headers the error carries)."""
    return JSONResponse({"error": error.detail}, protocol_status(error), headers=error.headers)


def describe(error: ValidationError) -> str:
    """Each invalid field of a body, and what was wrong with it."""
    return "; ".join(
        f"{'.'.join(str(part) for part in issue['loc']) or 'body'}: {issue['msg']}"
        for issue in error.errors(include_url=False)
    )


def describe_validation_error(error: RequestValidationError) -> str:
    """One line naming each invalid field, what was wrong with it and what was received."""
    return "; ".join(
        f"{'.'.join(str(part) for part in issue['loc'][1:]) or 'request'}: {issue['msg']}"
        for issue in error.errors()
    )


class ProtocolRoute(APIRoute):
    """A route whose failures reply in the protocol's error shape, counted in the metrics."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        endpoint = self.path_format

        async def handle_in_protocol(request: Request) -> Response:
            try:
                return await handle(request)
            except ArgosError as error:
                failure = error
            except RequestValidationError as error:
                failure = InvalidTensor(describe_validation_error(error))
            metrics.REJECTED.labels(endpoint=endpoint, error=failure.code).inc()
            return error_reply(failure)

        return handle_in_protocol
