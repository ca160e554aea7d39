"""Who may call each route: every route declares its scope, and refusals say why.

A route's scope is one of the dependencies :data:`PUBLIC`, :data:`INFER` and :data:`ADMIN`,
so the app's own route table names each route's owner (:func:`route_scope`), and a route
without one is found by the tests. Keys come as ``Authorization: Bearer <key>`` or in the
header named by ``ARGOS_API_KEY_HEADER`` (``tritonclient``'s ``headers=`` sends either).
:meth:`Access.authorize` is the check itself, without HTTP: the gRPC service
(:mod:`service.grpc`) calls it with the call's metadata.

Model control (``admin``) also refuses what a web page on another site could send: a
request whose ``Origin`` is not this server's or an allowed CORS origin, or whose
``Sec-Fetch-Site`` says it came from another site, and any body that is not JSON, so that
no cross-site "simple" request ever reaches a state-changing route.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, Request
from fastapi.params import Depends as DependsParam
from fastapi.routing import RouteContext, iter_route_contexts
from starlette.routing import BaseRoute, Mount

from service import metrics
from service.errors import ArgosError, Forbidden, Unauthorized, UnsupportedMediaType
from service.http.route_labels import endpoint_of
from service.keys import KeyRing, Scope
from service.settings import Settings


@dataclass(frozen=True)
class Access:
    """A server's keys and where it accepts them from."""

    keys: KeyRing
    key_header: str
    cors_origins: frozenset[str]

    @classmethod
    def from_settings(cls, settings: Settings) -> Access:
        keys = KeyRing.from_settings(
            settings.infer_keys,
            settings.infer_keys_file,
            settings.admin_keys,
            settings.admin_keys_file,
        )
        return cls(keys, settings.api_key_header, frozenset(settings.cors_origins))

    def presented_key(self, headers: Mapping[str, str]) -> str | None:
        """The key a request carries, if any; ``headers`` are looked up by lower-case name
        (HTTP headers, gRPC metadata)."""
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
        if self.key_header:
            return headers.get(self.key_header.lower()) or None
        return None

    def how_to_send(self, scope: Scope) -> str:
        header = f" or {self.key_header}: <key>" if self.key_header else ""
        return f"send a key with the {scope} scope as Authorization: Bearer <key>{header}"

    def authorize(self, scope: Scope, headers: Mapping[str, str]) -> None:
        """Admit a call to a route of ``scope`` with these headers, or raise a
        :class:`Refusal` saying why not (any protocol; HTTP adds its cross-site checks)."""
        if scope is Scope.PUBLIC:
            return
        if scope is Scope.ADMIN:
            if not self.keys.configured(Scope.ADMIN):
                raise Refusal(
                    "control_off",
                    Forbidden(
                        "model control is off: this server was started without admin keys. "
                        "Set ARGOS_ADMIN_KEYS_FILE (or ARGOS_ADMIN_KEYS) and restart it to "
                        "load and unload models at run time"
                    ),
                )
        elif not self.keys.configured(scope):
            return  # an open scope: no keys configured
        how = self.how_to_send(scope)
        key = self.presented_key(headers)
        if key is None:
            raise Refusal("missing_key", Unauthorized(f"this route needs a key; {how}"))
        held = self.keys.scopes_of(key)
        if not held:
            raise Refusal(
                "unknown_key",
                Unauthorized(f"the key is not valid here (unknown, or rotated out); {how}"),
            )
        if scope not in held:
            scopes = ", ".join(sorted(held))
            raise Refusal(
                "wrong_scope", Forbidden(f"the key holds the {scopes} scope, not {scope}; {how}")
            )


class Guard:
    """The dependency that admits a request to the routes of one scope."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    async def __call__(self, request: Request) -> None:
        if self.scope is Scope.PUBLIC:
            return
        access: Access = request.app.state.access
        try:
            if self.scope is Scope.ADMIN:
                _refuse_cross_site(request, access)
            access.authorize(self.scope, request.headers)
        except Refusal as refusal:
            metrics.AUTH_REFUSALS.labels(
                route=endpoint_of(request.scope), reason=refusal.reason
            ).inc()
            raise refusal.error from None


class Refusal(Exception):
    """Why a request is refused (a metric label, never the key) and what it is told."""

    def __init__(self, reason: str, error: ArgosError) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error


PUBLIC = Depends(Guard(Scope.PUBLIC))
INFER = Depends(Guard(Scope.INFER))
ADMIN = Depends(Guard(Scope.ADMIN))

FRAMEWORK_PUBLIC_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/openapi.json"})
"""Routes that FastAPI adds itself (the API docs): public."""


def app_routes(app: FastAPI) -> Iterator[RouteContext]:
    """Every route an app serves, those of included routers with their prefix and
    dependencies."""
    return iter_route_contexts(app.routes)


def route_scope(route: BaseRoute | RouteContext) -> Scope | None:
    """The scope a route of the app declares; None for a route that declares none."""
    if isinstance(getattr(route, "original_route", route), Mount):
        return Scope.PUBLIC  # static files of the page and of the docs
    for dependency in getattr(route, "dependencies", []):
        if isinstance(dependency, DependsParam) and isinstance(dependency.dependency, Guard):
            return dependency.dependency.scope
    if getattr(route, "path", None) in FRAMEWORK_PUBLIC_PATHS:
        return Scope.PUBLIC
    return None


def _refuse_cross_site(request: Request, access: Access) -> None:
    origin = request.headers.get("origin")
    site = request.headers.get("sec-fetch-site", "")
    foreign = origin is not None and origin not in access.cors_origins
    if foreign and urlsplit(origin or "").netloc == request.headers.get("host"):
        foreign = False  # this server's own page
    if foreign or site in ("cross-site", "same-site"):
        raise Refusal(
            "cross_site",
            Forbidden(
                f"model control is not accepted from a web page of another site (Origin "
                f"{origin!r}); call it from a script or tool, or list that origin in "
                "ARGOS_CORS_ORIGINS"
            ),
        )
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in ("", "application/json"):
        raise Refusal(
            "not_json",
            UnsupportedMediaType(
                f"model control takes a JSON body (Content-Type application/json) or none, "
                f"not {media_type!r}"
            ),
        )
