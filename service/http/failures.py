"""The last resort: an unexpected exception becomes a 500 in the error shape of its API.

The exception is logged with a request id, which the reply carries in its body and in the
``X-Request-Id`` header, and counted in ``argos_failed_requests_total``; the client sees no
traceback.
"""

from __future__ import annotations

import logging
import uuid

from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import metrics
from service.http.route_labels import endpoint_of

logger = logging.getLogger("argos.http")
REQUEST_ID_HEADER = "X-Request-Id"
V2_PREFIX = "/v2"


class UnexpectedErrors:
    """ASGI middleware: any exception a route lets through is answered with a JSON 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        replied = False

        async def send_tracked(message: Message) -> None:
            nonlocal replied
            replied = replied or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracked)
        except ClientDisconnect:
            return  # the client is gone, or its connection was closed for being too slow
        except Exception:
            request_id = uuid.uuid4().hex
            endpoint = endpoint_of(scope)
            logger.exception(
                "unexpected error in %s %s (request id %s)", scope["method"], endpoint, request_id
            )
            metrics.FAILED.labels(endpoint=endpoint).inc()
            if not replied:
                await _reply(scope, request_id)(scope, receive, send)


def _reply(scope: Scope, request_id: str) -> JSONResponse:
    detail = (
        f"the server failed unexpectedly; nothing was wrong with the request as far as it "
        f"can tell. Retry, or report request id {request_id}"
    )
    if scope["path"].startswith(V2_PREFIX):
        body: dict[str, str] = {"error": detail}
    else:
        body = {"error": "internal_error", "detail": detail}
    return JSONResponse(body, 500, headers={REQUEST_ID_HEADER: request_id})
