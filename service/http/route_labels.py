"""Metric labels by route template, so that the paths clients make up cost no series.

A request is labelled with the template of the route that serves it
(``/v2/models/{name}/ready``), BentoML's own endpoints with their path, and anything else
with :data:`UNMATCHED`. BentoML's request metrics label with the raw path, computed before
routing; :func:`install` puts a subclass of its middleware in its place that shows it the
template instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from bentoml._internal.server.http import instruments
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

UNMATCHED = "unmatched"
BENTOML_PATHS = frozenset({"/livez", "/healthz", "/readyz", "/metrics", "/schema.json"})
"""Endpoints of BentoML's own app, outside the Argos API."""
_RAW_PATH = "argos.raw_path"


def leaf_routes(routes: Sequence[BaseRoute]) -> list[BaseRoute]:
    """The routes that serve requests, those of included routers flattened in order."""
    leaves: list[BaseRoute] = []
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI's include_router
        if included is not None and not route.include_context.prefix:  # type: ignore[attr-defined]
            leaves.extend(leaf_routes(included.routes))
        else:
            leaves.append(route)
    return leaves


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The template of the first of ``routes`` (see :func:`leaf_routes`) that matches
    ``scope``, even if not its method; else :data:`UNMATCHED`."""
    path = scope["path"]
    if path in BENTOML_PATHS:
        return path
    for route in routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            return getattr(route, "path_format", None) or UNMATCHED
    return UNMATCHED


def endpoint_of(scope: Scope) -> str:
    """The template of the route that served ``scope`` (set once routing matched), or
    :data:`UNMATCHED`."""
    route = scope.get("route")
    return getattr(route, "path_format", None) or UNMATCHED


class _RestorePath:
    """Gives the application the real path again, inside the metrics middleware."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if _RAW_PATH in scope:
            scope = dict(scope, path=scope[_RAW_PATH])
            del scope[_RAW_PATH]
        await self.app(scope, receive, send)


class RouteLabelledTrafficMetrics(instruments.RunnerTrafficMetricsMiddleware):
    """BentoML's request metrics, labelled by route template instead of path."""

    routes: ClassVar[Sequence[BaseRoute]] = ()

    def __init__(self, app: ASGIApp, **options: Any) -> None:
        super().__init__(_RestorePath(app), **options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            template = route_template(self.routes, scope)
            scope = dict(scope, path=template, **{_RAW_PATH: scope["path"]})
        await super().__call__(scope, receive, send)


def install(routes: Sequence[BaseRoute]) -> None:
    """Make BentoML label its request metrics by the template among ``routes``."""
    RouteLabelledTrafficMetrics.routes = leaf_routes(routes)
    instruments.RunnerTrafficMetricsMiddleware = RouteLabelledTrafficMetrics  # type: ignore[misc]
