"""Load shedding at the connection: a full worker turns inference requests away before the
application sees them.

A refusal given by the application (:class:`~service.inference.admission.Admission`, once
the body is in) goes through BentoML's and Argos's middlewares, routing, authentication,
validation and the reading of the upload: about 2.5 core-ms, so clients that ignore
``Retry-After`` can keep a full worker busy refusing them, and the work it holds then runs
slower. When a worker could not admit even the cheapest one-image request of any model it
serves, :class:`LoadShedder` answers an authorized ``POST`` to an inference route (a route
of the ``infer`` scope) from the connection itself, with the reply admission would give:
503 ``overloaded`` with ``Retry-After``, in the error shape of the API asked (``/v2``:
``{"error": ...}``). The body is read and dropped first, so that the connection stays open
as after any refusal, unless the client waits for ``100 Continue`` or the body runs past
the largest upload: it is then answered without (the rest of) its body, and the connection
closes. A connection that asks again before the
``Retry-After`` of its last refusal has passed gets its next refusal only once it has: a
client that ignores ``Retry-After`` is answered at the pace it was asked to keep, and
cannot spend the worker's CPU, or its own, on a stream of refusals.

Everything else goes to the application as before: requests while the worker has room, a
request without a valid key (it gets its 401 or 403, and learns nothing about load), and a
cross-origin request from a browser where CORS is configured (its reply needs the CORS
headers).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from service import metrics
from service.errors import Overloaded
from service.http.auth import Access, Refusal, route_scope
from service.http.failures import V2_PREFIX
from service.http.route_labels import leaf_routes
from service.http.uploads import FORM_OVERHEAD_BYTES
from service.http.worker import Worker
from service.keys import Scope as KeyScope

MAX_TRACKED = 10_000
"""Most refused connections whose Retry-After is remembered; the oldest are forgotten."""


class LoadShedder:
    """Decides, from a request's head, whether a full worker turns it away at once."""

    def __init__(
        self,
        worker: Worker,
        access: Access,
        routes: Sequence[BaseRoute],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``routes``: the app's routes; those of the ``infer`` scope taking ``POST`` are
        the inference routes shed."""
        self.worker = worker
        self.access = access
        self._clock = clock
        self._due: dict[object, float] = {}
        """Refused connections (client address and port) → when their Retry-After ends,
        oldest first."""
        self.routes = [
            route
            for route in leaf_routes(routes)
            if route_scope(route) is KeyScope.INFER and "POST" in getattr(route, "methods", ())
        ]

    def __call__(self, scope: Scope) -> ASGIApp | None:
        """The reply that turns this request away, or None to let the application answer."""
        admission = self.worker.admission
        if not admission.inflight or admission.draining or scope["method"] != "POST":
            return None
        why = admission.full_for(1, self._cheapest_image_s())
        if why is None:
            return None
        endpoint = self._inference_route(scope)
        if endpoint is None:
            return None
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if self.access.cors_origins and "origin" in headers:
            return None
        try:
            self.access.authorize(KeyScope.INFER, headers)
        except Refusal:
            return None
        metrics.REJECTED.labels(endpoint=endpoint, error=Overloaded.code).inc()
        error = admission.refusal(why)
        hold_s = self._hold(scope.get("client"), error.retry_after_s)
        return _Refuse(
            error,
            v2_shape=scope["path"].startswith(V2_PREFIX),
            hold_s=hold_s,
            max_body_bytes=self.worker.settings.max_upload_bytes + FORM_OVERHEAD_BYTES,
        )

    def _hold(self, connection: object, retry_after_s: float) -> float:
        """How long to hold this refusal: until the Retry-After of the connection's last
        refusal ends (none for a connection without an address). Records when this one's
        ends."""
        if connection is None:
            return 0.0
        now = self._clock()
        due = self._due
        while due and (next(iter(due.values())) <= now or len(due) >= MAX_TRACKED):
            del due[next(iter(due))]  # the oldest: past, or one too many
        hold_s = max(0.0, due.pop(connection, now) - now)
        due[connection] = now + hold_s + retry_after_s
        return hold_s

    def _cheapest_image_s(self) -> float:
        """The expected runner seconds of one image of the cheapest model served."""
        served = self.worker.models.served().values()
        return min((m.runner.expected_seconds(1) for models in served for m in models), default=0)

    def _inference_route(self, scope: Scope) -> str | None:
        """The template of the inference route ``scope`` asks for, if it asks for one."""
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return getattr(route, "path_format", None)
        return None


class _Refuse:
    """An ASGI app that replies ``error`` after reading and dropping the request body (up
    to ``max_body_bytes``), and ``hold_s`` seconds."""

    def __init__(
        self, error: Overloaded, *, v2_shape: bool, hold_s: float, max_body_bytes: int
    ) -> None:
        self.hold_s = hold_s
        self.max_body_bytes = max_body_bytes
        shaped = {"error": error.detail} if v2_shape else error.to_dict()
        body = json.dumps(shaped).encode()
        self.body = body
        self.status = error.status_code
        self.headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *((name.lower().encode(), value.encode()) for name, value in error.headers.items()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _expects_continue(scope):
            await self._drop_body(receive)
        if self.hold_s:
            await asyncio.sleep(self.hold_s)
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})

    async def _drop_body(self, receive: Receive) -> None:
        """Read the body and drop it; stop past ``max_body_bytes`` (the connection then
        closes once the reply is sent)."""
        read = 0
        while read <= self.max_body_bytes:
            message = await receive()
            read += len(message.get("body", b""))
            if not message.get("more_body"):
                return


def _expects_continue(scope: Scope) -> bool:
    return any(
        name == b"expect" and value.lower() == b"100-continue" for name, value in scope["headers"]
    )
