"""The connection guard over real sockets: uvicorn with the guarded protocol, in a thread.

The limits are small so that every timeout is reached in about a second.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from service.http import transport
from service.http.transport import ConnectionLimits, GuardedHttpToolsProtocol, stop_after_backlog

LIMITS = ConnectionLimits(
    idle_timeout_s=1,
    head_timeout_s=1,
    max_header_line_bytes=1024,
    max_head_bytes=4096,
    max_headers=10,
    body_timeout_s=3,
    min_body_rate=4096,
    body_rate_grace_s=1,
    linger_s=1,
    max_linger_bytes=1024 * 1024,
)


@dataclass
class Seen:
    """What the application saw."""

    bodies: list[int] = field(default_factory=list)
    disconnects: int = 0


def make_app(seen: Seen) -> Starlette:
    async def echo(request: Request) -> JSONResponse:
        try:
            body = await request.body()
        except ClientDisconnect:
            seen.disconnects += 1
            raise
        seen.bodies.append(len(body))
        return JSONResponse({"bytes": len(body)})

    async def refuse(request: Request) -> JSONResponse:
        return JSONResponse({"error": "payload_too_large"}, 413)

    async def slow(request: Request) -> JSONResponse:
        await request.body()
        await asyncio.sleep(1)
        return JSONResponse({"slow": True})

    return Starlette(
        routes=[
            Route("/echo", echo, methods=["GET", "POST"]),
            Route("/refuse", refuse, methods=["POST"]),
            Route("/slow", slow, methods=["POST"]),
        ]
    )


class Running:
    def __init__(self, server: uvicorn.Server, port: int, seen: Seen) -> None:
        self.server = server
        self.port = port
        self.seen = seen

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return sock


@contextmanager
def guarded_server(app: ASGIApp) -> Iterator[tuple[uvicorn.Server, int]]:
    """uvicorn serving ``app`` with the guarded protocol on a loopback port, in a thread;
    yields the server and its port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, http=GuardedHttpToolsProtocol, lifespan="off", log_level="critical"
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield server, listener.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture()
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Running]:
    monkeypatch.setattr(GuardedHttpToolsProtocol, "limits", LIMITS)
    seen = Seen()
    with guarded_server(make_app(seen)) as (running, port):
        yield Running(running, port, seen)


def read_reply(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One reply: its status, headers and body (read to its Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body[:length]


def closed(sock: socket.socket, within_s: float) -> bool:
    """Whether the server closes the connection within ``within_s`` (data is discarded)."""
    sock.settimeout(within_s)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


def test_a_normal_keep_alive_connection_serves_requests_with_bodies(server: Running) -> None:
    with server.connect() as sock:
        for size in (0, 10, 200_000):
            sock.sendall(
                b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size
            )
            status, headers, body = read_reply(sock)
            assert status == 200
            assert json.loads(body) == {"bytes": size}
            assert headers.get("connection") != "close"


def test_a_connection_that_sends_nothing_is_closed(server: Running) -> None:
    with server.connect() as sock:
        started = time.monotonic()
        assert closed(sock, within_s=3)
        assert time.monotonic() - started < LIMITS.idle_timeout_s + 1


def test_a_slow_head_gets_408(server: Running) -> None:
    with server.connect() as sock:
        started = time.monotonic()
        sock.sendall(b"GET /echo HTTP/1.1\r\n")
        try:
            for _ in range(20):
                sock.sendall(b"X")
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, _, body = read_reply(sock)
        assert status == 408
        assert b"head" in body
        assert time.monotonic() - started < LIMITS.head_timeout_s + 1


@pytest.mark.parametrize(
    ("head", "status", "says"),
    [
        (b"GET /echo HTTP/1.1\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n", 431, b"X-Big"),
        (b"GET /echo HTTP/1.1\r\n" + b"X-A: b\r\n" * 11 + b"\r\n", 431, b"more than 10 headers"),
        (
            b"GET /echo HTTP/1.1\r\n"
            + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 500) for i in range(9)),
            431,
            b"head exceeds",
        ),
        (b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\n\r\n", 414, b"URL"),
    ],
    ids=["long-line", "many-headers", "large-head", "long-url"],
)
def test_an_oversized_head_is_refused(
    server: Running, head: bytes, status: int, says: bytes
) -> None:
    with server.connect() as sock:
        sock.sendall(head)
        got, headers, body = read_reply(sock)
        assert got == status
        assert says in body
        assert headers["connection"] == "close"


def test_an_endless_header_line_is_cut_off_at_the_head_limit(server: Running) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nX-Endless: ")
        try:
            for _ in range(64):
                sock.sendall(b"a" * 1024)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert closed(sock, within_s=2), "the server went on reading one endless header"


def test_a_slow_body_gets_408_and_the_application_sees_the_client_gone(
    server: Running,
) -> None:
    with server.connect() as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        started = time.monotonic()
        try:
            for _ in range(40):
                sock.sendall(b"x" * 100)
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, headers, body = read_reply(sock)
        assert status == 408
        assert b"bytes/s" in body
        assert time.monotonic() - started < LIMITS.body_rate_grace_s + 2
    time.sleep(0.2)
    assert server.seen.disconnects == 1
    assert server.seen.bodies == []


def test_a_body_past_its_deadline_gets_408(server: Running) -> None:
    with server.connect() as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n")
        try:
            for _ in range(50):  # 5 KiB/s: above the minimum rate, never done
                sock.sendall(b"x" * 512)
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, _, body = read_reply(sock)
        assert status == 408
        assert b"within" in body


def test_a_reply_before_the_body_is_read_reaches_the_client(server: Running) -> None:
    body = b"x" * 3_000_000  # more than the socket buffers hold
    with server.connect() as sock:
        sock.sendall(b"POST /refuse HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
        sock.sendall(body)  # what a simple client does: send everything, then read
        status, headers, _ = read_reply(sock)
        assert status == 413
        assert headers["connection"] == "close"


def test_expect_100_continue_refused_without_the_body(server: Running) -> None:
    with server.connect() as sock:
        sock.sendall(
            b"POST /refuse HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        status, headers, _ = read_reply(sock)
        assert status == 413
        assert headers["connection"] == "close"
        assert closed(sock, within_s=LIMITS.linger_s + 1)


def test_expect_100_continue_accepted(server: Running) -> None:
    with server.connect() as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(b"hello")
        status, _, body = read_reply(sock)
        assert (status, json.loads(body)) == (200, {"bytes": 5})


def test_on_shutdown_a_request_under_way_is_answered(server: Running) -> None:
    with server.connect() as busy, server.connect() as fresh:
        busy.sendall(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        time.sleep(0.2)
        server.server.should_exit = True
        time.sleep(0.2)
        fresh.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, _ = read_reply(fresh)
        assert status == 200
        assert headers["connection"] == "close"
        status, headers, _ = read_reply(busy)
        assert status == 200
        assert headers["connection"] == "close"


def test_install_selects_the_guarded_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(uvicorn.config.HTTP_PROTOCOLS, "auto", "unchanged")
    monkeypatch.setattr(GuardedHttpToolsProtocol, "limits", GuardedHttpToolsProtocol.limits)
    transport.install(LIMITS)
    config = uvicorn.Config(make_app(Seen()))
    config.load()
    assert config.http_protocol_class is GuardedHttpToolsProtocol
    assert GuardedHttpToolsProtocol.limits is LIMITS


def test_the_listener_closes_once_its_backlog_is_empty() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        queued = socket.create_connection(listener.getsockname())
        stopped = threading.Event()
        started = time.monotonic()
        stop_after_backlog(stopped.set, at_least_s=0.1, at_most_s=5)
        assert not stopped.wait(0.5), "stopped with a connection waiting in the backlog"
        accepted, _ = listener.accept()
        assert stopped.wait(2)
        assert 0.5 <= time.monotonic() - started < 2
        accepted.close()
        queued.close()


def test_the_stop_leaves_no_duplicate_of_other_files_open() -> None:
    """Looking for listeners duplicates every descriptor; none may stay open: a duplicate of
    a pipe's write end would keep the pipe from ever reaching its end."""
    read_end, write_end = os.pipe()
    stopped = threading.Event()
    stop_after_backlog(stopped.set, at_least_s=0, at_most_s=1)
    assert stopped.wait(2)
    os.close(write_end)
    readable, _, _ = select.select([read_end], [], [], 1)
    os.close(read_end)
    assert readable, "a duplicate of the pipe's write end stayed open"


def test_a_listener_of_another_server_neither_delays_nor_outlives_the_stop() -> None:
    """The gRPC port's listener is the gRPC server's: its backlog is not waited for, and no
    duplicate of it stays open to take connections after that server closed it."""
    with socket.socket() as grpc_listener:
        grpc_listener.bind(("127.0.0.1", 0))
        grpc_listener.listen(8)
        port = grpc_listener.getsockname()[1]
        queued = socket.create_connection(("127.0.0.1", port))
        stopped = threading.Event()
        stop_after_backlog(stopped.set, at_least_s=0.1, at_most_s=5, other_ports=frozenset({port}))
        assert stopped.wait(1), "waited for another server's backlog"
        queued.close()
