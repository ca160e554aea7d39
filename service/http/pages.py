"""The page for people at ``/``, and API docs that need nothing from outside the machine.

BentoML mounts the Argos app ahead of its own index page, so the ``/`` route here answers
instead of BentoML's. Swagger UI loads its script and styles from the ``fastapi-offline``
package rather than from a CDN. ReDoc is left out: it loads its logo from the internet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from service.http.auth import PUBLIC

STATIC = Path(__file__).parent / "static"
DOCS_ASSETS = "/docs/assets"

router = APIRouter(include_in_schema=False, dependencies=[PUBLIC])


@router.get("/")
async def index() -> FileResponse:
    """The page: pick a photo, see its labels, find objects in it."""
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def app_with_page_and_docs(**fastapi_options: Any) -> FastAPI:
    """A FastAPI app with the page at ``/``, its files under ``/static`` and offline
    ``/docs`` (Swagger UI)."""
    app = FastAPIOffline(static_url=DOCS_ASSETS, redoc_url=None, **fastapi_options)
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
