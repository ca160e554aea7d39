"""The public HTTP API: a FastAPI app that BentoML mounts on the Argos service.

Routes reach the running service through :mod:`service.backend`; this module wires them
together and turns errors into JSON bodies that say what was wrong.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from service import metrics
from service.errors import ArgosError, InvalidParameter
from service.http import classify as routes_classify
from service.http import detect as routes_detect
from service.http.schemas import ErrorResponse

app = FastAPI(
    title="Argos",
    summary="Image classification and sliding-window detection",
    responses={status: {"model": ErrorResponse} for status in (400, 413, 415, 422)},
)
app.include_router(routes_classify.router)
app.include_router(routes_detect.router)


@app.exception_handler(ArgosError)
async def _argos_error(request: Request, error: ArgosError) -> JSONResponse:
    metrics.REJECTED.labels(endpoint=request.url.path, error=error.code).inc()
    return JSONResponse(error.to_dict(), status_code=error.status_code)


@app.exception_handler(RequestValidationError)
async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    problems = "; ".join(
        f"{'.'.join(str(part) for part in issue['loc'][1:]) or 'request'}: {issue['msg']}"
        + (f" (got {issue['input']!r})" if "input" in issue else "")
        for issue in error.errors()
    )
    return await _argos_error(request, InvalidParameter(problems))
