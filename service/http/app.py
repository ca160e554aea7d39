"""The public HTTP API: a FastAPI app that BentoML mounts on the Argos service.

Routes reach the worker's model through :mod:`service.http.worker`; this module wires them
together and turns errors into JSON bodies that say what was wrong.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from service import metrics
from service.errors import ArgosError, InvalidParameter
from service.http import classify, detect, models, pages
from service.http.auth import Access
from service.http.failures import UnexpectedErrors
from service.http.in_progress import RequestsInProgress
from service.http.route_labels import endpoint_of
from service.http.schemas import ErrorResponse
from service.http.v2 import routes as v2
from service.http.worker import MODEL_HEADER, Worker
from service.settings import Settings, get_settings


def create_app(worker: Worker | None = None) -> FastAPI:
    """The API; ``worker`` can also be attached later as ``app.state.worker``."""
    settings = worker.settings if worker is not None else get_settings()
    app = pages.app_with_page_and_docs(
        title="Argos",
        summary="Image classification and sliding-window detection",
        responses={
            status: {"model": ErrorResponse} for status in (400, 401, 403, 404, 413, 415, 422, 503)
        },
    )
    app.state.worker = worker
    app.state.access = Access.from_settings(settings)
    _allow_origins(app, settings)
    app.include_router(classify.router)
    app.include_router(detect.router)
    app.include_router(models.router)
    app.include_router(v2.router)
    app.add_exception_handler(ArgosError, _argos_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_middleware(UnexpectedErrors)
    app.add_middleware(RequestsInProgress, api=app)
    return app


def _allow_origins(app: FastAPI, settings: Settings) -> None:
    """CORS headers for the configured origins only; none by default."""
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", settings.api_key_header],
            expose_headers=[MODEL_HEADER, "Retry-After"],
        )


async def _argos_error(request: Request, error: ArgosError) -> JSONResponse:
    metrics.REJECTED.labels(endpoint=endpoint_of(request.scope), error=error.code).inc()
    return JSONResponse(error.to_dict(), status_code=error.status_code, headers=error.headers)


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    problems = "; ".join(
        f"{'.'.join(str(part) for part in issue['loc'][1:]) or 'request'}: {issue['msg']}"
        + (f" (got {issue['input']!r})" if "input" in issue else "")
        for issue in error.errors()
    )
    return await _argos_error(request, InvalidParameter(problems))
