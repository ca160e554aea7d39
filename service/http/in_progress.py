"""ASGI middleware: the worker's count of HTTP requests in progress, from their headers on."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send


class RequestsInProgress:
    """Counts every HTTP request into its worker's ``admission.requests`` while it is worked
    on, its body still arriving included: what tells a lone request from one of many.
    ``api`` is the app whose worker counts (attached once its models are loaded)."""

    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app = app
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        worker = getattr(self.api.state, "worker", None)
        if scope["type"] != "http" or worker is None:
            await self.app(scope, receive, send)
            return
        admission = worker.admission
        admission.requests += 1
        try:
            await self.app(scope, receive, send)
        finally:
            admission.requests -= 1
