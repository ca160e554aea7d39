"""``GET /readyz`` that says why: BentoML's probe answers a bare 503 when the worker is not
ready; this middleware, placed in front of it, answers that 503 itself with the reasons
(draining, a start-up model not loaded, models changing) as JSON."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from service import metrics

READINESS_PATH = "/readyz"


class ReadinessReasons:
    """ASGI middleware over the whole server; ``api`` is the app whose worker it judges."""

    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app = app
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == READINESS_PATH:
            worker = getattr(self.api.state, "worker", None)
            reasons = (
                ["the models are still loading"] if worker is None else worker.unready_because()
            )
            metrics.READY.set(int(not reasons))
            if reasons:
                reply = JSONResponse({"ready": False, "reasons": reasons}, status_code=503)
                await reply(scope, receive, send)
                return
        await self.app(scope, receive, send)
