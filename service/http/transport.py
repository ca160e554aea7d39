"""Bounded HTTP/1.1 connections: uvicorn's httptools protocol with limits on heads and bodies.

uvicorn bounds neither the request head (its size, its header count, the time it takes to
arrive) nor the time a body takes, and BentoML builds uvicorn's ``Config`` itself, so no
option reaches them. This protocol class adds them where the bytes arrive, before anything
is parsed into Python objects or an application task exists:

- a connection that sends nothing is closed after ``idle_timeout_s`` (also the keep-alive
  timeout between requests);
- a head must arrive within ``head_timeout_s`` of its first byte (else 408), fit in
  ``max_head_bytes`` with no header line over ``max_header_line_bytes`` and at most
  ``max_headers`` headers (else 431);
- a body must arrive within ``body_timeout_s`` and, after its first
  ``body_rate_grace_s``, at ``min_body_rate`` bytes/s or more (else 408); the application
  sees the client as gone, so whatever it holds is released;
- a reply sent before the request body has arrived (a 413 or 503 refusal) closes the
  connection gracefully: ``Connection: close``, then the rest of the body is read and
  discarded for at most ``linger_s`` before closing, so that the client reads its reply
  instead of a reset. That also answers ``Expect: 100-continue`` requests refused before
  the body was asked for, whether their client sends the body or not;
- a request the :data:`Shedder` installed with :func:`shed_load` turns away is answered by
  the reply it gives instead of the application;
- with a :class:`~service.http.balance.ConnectionBalance` installed by
  :func:`balance_connections`, the connection is counted, and a reply says
  ``Connection: close`` when the balance lets the connection go to another worker;
- when the server stops, a request already on its way (its head begun, or the first of a
  connection opened before) is still read and answered, and :func:`stop_after_backlog`
  closes the listening sockets only once no connection waits in their backlog.

:func:`install` makes it the class uvicorn picks for ``http="auto"``.
"""

from __future__ import annotations

import asyncio
import http
import json
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import uvicorn.config
from starlette.types import ASGIApp, Scope
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from service.http.balance import ConnectionBalance
from service.settings import Settings

_PROTOCOL_PATH = f"{__name__}:GuardedHttpToolsProtocol"
_BODY_CHECK_INTERVAL_S = 1.0

Shedder = Callable[[Scope], ASGIApp | None]
"""A request's scope → the app that answers it in the application's place, or None."""


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The ceilings and timeouts of one HTTP/1.1 connection (defaults: :class:`Settings`)."""

    idle_timeout_s: float
    head_timeout_s: float
    max_header_line_bytes: int
    max_head_bytes: int
    max_headers: int
    body_timeout_s: float
    min_body_rate: int
    body_rate_grace_s: float
    linger_s: float
    max_linger_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            idle_timeout_s=settings.idle_timeout_s,
            head_timeout_s=settings.head_timeout_s,
            max_header_line_bytes=settings.max_header_line_bytes,
            max_head_bytes=settings.max_head_bytes,
            max_headers=settings.max_headers,
            body_timeout_s=settings.body_timeout_s,
            min_body_rate=settings.min_body_rate,
            body_rate_grace_s=settings.body_rate_grace_s,
            linger_s=settings.linger_s,
            max_linger_bytes=settings.max_upload_bytes + 1024 * 1024,
        )


def stop_after_backlog(
    stop: Callable[[], None],
    *,
    at_least_s: float,
    at_most_s: float,
    other_ports: frozenset[int] = frozenset(),
) -> None:
    """Call ``stop`` (which closes the listening sockets) once ``at_least_s`` have passed
    and no connection waits in a listen backlog, or after ``at_most_s``; from a thread of
    its own. A connection still queued when a listening socket closes would be reset.
    Listeners on ``other_ports`` (the gRPC port) are not this server's and are left alone:
    a duplicate of one would keep it open, and taking connections, after its server
    closed it."""

    def wait_then_stop() -> None:
        listeners = _listening_sockets(other_ports)
        try:
            time.sleep(at_least_s)
            deadline = time.monotonic() + at_most_s - at_least_s
            quiet_polls = 0
            while quiet_polls < 2 and time.monotonic() < deadline:
                waiting, _, _ = select.select(listeners, [], [], 0)
                quiet_polls = 0 if waiting else quiet_polls + 1
                time.sleep(0.05)
        finally:
            for listener in listeners:
                listener.close()  # our duplicates only: they must not keep a listener open
        stop()

    threading.Thread(target=wait_then_stop, name="argos-drain", daemon=True).start()


def _listening_sockets(other_ports: frozenset[int]) -> list[socket.socket]:
    """Duplicates of this process's listening sockets but those on ``other_ports`` (Linux;
    none elsewhere)."""
    found = []
    fd_folder = Path("/proc/self/fd")
    for entry in fd_folder.iterdir() if fd_folder.is_dir() else ():
        try:
            duplicate = os.dup(int(entry.name))
        except (OSError, ValueError):
            continue
        try:
            sock = socket.socket(fileno=duplicate)
        except OSError:  # not a socket
            os.close(duplicate)
            continue
        try:
            listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
            port = sock.getsockname()[1] if sock.family in (socket.AF_INET, socket.AF_INET6) else 0
        except OSError:
            listening, port = 0, 0
        if listening and port not in other_ports:
            found.append(sock)
        else:
            sock.close()
    return found


def install(limits: ConnectionLimits) -> None:
    """Make :class:`GuardedHttpToolsProtocol` with ``limits`` uvicorn's ``http="auto"``."""
    GuardedHttpToolsProtocol.limits = limits
    uvicorn.config.HTTP_PROTOCOLS["auto"] = _PROTOCOL_PATH


def shed_load(shedder: Shedder | None) -> None:
    """Let ``shedder`` turn requests away before the application sees them (None: stop)."""
    GuardedHttpToolsProtocol.shedder = shedder


def balance_connections(balance: ConnectionBalance | None) -> None:
    """Count connections in ``balance`` and let them go when it says so (None: stop)."""
    GuardedHttpToolsProtocol.balance = balance


class _HeadRefused(Exception):
    """Raised from a parser callback to stop parsing a head over a limit."""


class _LingeringTransport:
    """The transport as a request's reply sees it: closing it waits for the request body."""

    def __init__(self, protocol: GuardedHttpToolsProtocol, transport: asyncio.Transport) -> None:
        self._protocol = protocol
        self._transport = transport

    def close(self) -> None:
        self._protocol.close_after_body()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with :class:`ConnectionLimits` enforced."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits.from_settings(Settings())
    shedder: ClassVar[Shedder | None] = None
    balance: ClassVar[ConnectionBalance | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeout_keep_alive = self.limits.idle_timeout_s
        self._timer: asyncio.TimerHandle | None = None
        self._in_head = True  # waiting for (the rest of) a request head
        self._head_bytes = 0
        self._header_count = 0
        self._header_bytes = 0
        self._refusal: tuple[int, str] | None = None
        self._body_started = 0.0
        self._body_bytes = 0
        self._reading_body = False
        self._keep_alive_after_body = False
        self._shutting_down = False
        self._lingering = False
        self._lingered_bytes = 0
        self._reply_transport: _LingeringTransport | None = None
        self._balance: ConnectionBalance | None = None  # counting this connection

    # Connection events

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._reply_transport = _LingeringTransport(self, transport)
        self._arm(self.limits.idle_timeout_s, self._close_idle)
        self._balance = self.balance
        if self._balance is not None:
            self._balance.opened()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._balance is not None:
            self._balance.closed()
            self._balance = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._lingered_bytes += len(data)
            if self._lingered_bytes > self.limits.max_linger_bytes:
                self.transport.close()
            return
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > self.limits.max_head_bytes:
            self._refuse(431, f"the request head exceeds {self.limits.max_head_bytes:,} bytes")

    def send_400_response(self, msg: str) -> None:
        if self._refusal is not None:
            self._refuse(*self._refusal)
        else:
            super().send_400_response(msg)

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_count = 0
        self._header_bytes = 0
        self._refusal = None
        self._arm(self.limits.head_timeout_s, self._head_timed_out)

    def on_url(self, url: bytes) -> None:
        if len(self.url) + len(url) > self.limits.max_header_line_bytes:
            self._stop_head(414, f"the URL is over {self.limits.max_header_line_bytes:,} bytes")
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        limits = self.limits
        line = len(name) + len(value) + 4
        self._header_count += 1
        self._header_bytes += line
        if self._header_count > limits.max_headers:
            self._stop_head(431, f"the request has more than {limits.max_headers} headers")
        if line > limits.max_header_line_bytes:
            shown = name[:64].decode("latin-1")
            self._stop_head(431, f"header {shown!r} is over {limits.max_header_line_bytes:,} bytes")
        if self._header_bytes > limits.max_head_bytes:
            self._stop_head(431, f"the request head exceeds {limits.max_head_bytes:,} bytes")
        super().on_header(name, value)

    def _stop_head(self, status: int, detail: str) -> None:
        """Stop parsing: the parser raises, and :meth:`send_400_response` sends this."""
        self._refusal = (status, detail)
        raise _HeadRefused(detail)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is None or self._reply_transport is None:
            return
        cycle.transport = self._reply_transport  # type: ignore[assignment]
        if self.parser.should_upgrade():
            return
        self._reading_body = True
        self._body_started = self.loop.time()
        self._body_bytes = 0
        # Until the body is in, a reply ends the connection: the client may still be sending.
        self._keep_alive_after_body = cycle.keep_alive and not self._shutting_down
        cycle.keep_alive = False
        self._arm(_BODY_CHECK_INTERVAL_S, self._check_body)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGIApp) -> None:
        shedder = self.shedder
        refusal = shedder(cycle.scope) if shedder is not None else None
        super()._start_asgi_task(cycle, refusal or app)  # type: ignore[arg-type]

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._reading_body = False
        self._in_head = True
        self._head_bytes = 0
        self._disarm()
        if self.cycle is not None and not self.cycle.response_started:
            self.cycle.keep_alive = self._keep_alive_after_body and not self._let_go()
        super().on_message_complete()

    def _let_go(self) -> bool:
        """Whether this connection ends after its reply, so that its client reconnects to
        a worker with fewer connections."""
        if self._balance is None or not self._balance.release_one():
            return False
        self._balance = None  # no longer counted
        return True

    def shutdown(self) -> None:
        """The server stops: a request on its way (its head begun, or a new connection's
        first, within the idle timeout) is still read and answered, then the connection
        closes."""
        self._shutting_down = True
        self._keep_alive_after_body = False
        waiting = self.cycle is None or self.cycle.response_complete
        if waiting and self._in_head and (self._head_bytes or self.cycle is None):
            return
        super().shutdown()

    # Closing

    def close_after_body(self) -> None:
        """Close once the client has sent the rest of its body, or ``linger_s`` has passed."""
        if not self._reading_body or self.transport.is_closing():
            self.transport.close()
            return
        self._reading_body = False
        self._lingering = True
        self._lingered_bytes = 0
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._arm(self.limits.linger_s, self.transport.close)

    def _refuse(self, status: int, detail: str) -> None:
        """Reply ``status`` (unless a reply has started) and close the connection; the
        application, if it runs, sees the client as gone."""
        self._disarm()
        self._in_head = False
        self._reading_body = False
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            v2 = getattr(self, "url", b"").startswith(b"/v2")
            self.transport.write(_plain_reply(status, detail, v2_shape=v2))
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()

    def _close_idle(self) -> None:
        self._timer = None
        if self._head_bytes:
            self._head_timed_out()
        elif not self.transport.is_closing():
            self.transport.close()

    def _head_timed_out(self) -> None:
        self._timer = None
        self._refuse(408, f"the request head did not arrive within {self.limits.head_timeout_s} s")

    def _check_body(self) -> None:
        self._timer = None
        if not self._reading_body:
            return
        elapsed = self.loop.time() - self._body_started
        limits = self.limits
        rate = self._body_bytes / elapsed
        too_slow = elapsed >= limits.body_rate_grace_s and rate < limits.min_body_rate
        if self.flow.read_paused and elapsed < limits.body_timeout_s:
            # The application is not reading (or a pipelined request waits): not the
            # client's doing, so its rate is not checked.
            self._arm(_BODY_CHECK_INTERVAL_S, self._check_body)
        elif elapsed >= limits.body_timeout_s:
            self._refuse(408, f"the request body did not arrive within {limits.body_timeout_s} s")
        elif too_slow:
            self._refuse(
                408,
                f"the request body arrives at {rate:,.0f} bytes/s; "
                f"the minimum is {limits.min_body_rate:,} bytes/s",
            )
        else:
            self._arm(_BODY_CHECK_INTERVAL_S, self._check_body)

    def _arm(self, delay: float, callback: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _plain_reply(status: int, detail: str, *, v2_shape: bool) -> bytes:
    """A complete ``status`` reply that closes the connection, its JSON body in the shape of
    the API asked (``{"error": detail}`` on ``/v2``, else ``{"error": code, "detail": ...}``)."""
    phrase = http.HTTPStatus(status).phrase
    error = (
        {"error": detail}
        if v2_shape
        else {"error": phrase.lower().replace(" ", "_"), "detail": detail}
    )
    body = json.dumps(error).encode()
    return (
        f"HTTP/1.1 {status} {phrase}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode() + body
