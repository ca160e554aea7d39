"""Load shedding at the connection: a full worker's refusals, over real sockets (uvicorn
with the guarded protocol, in a thread, over the tiny models), and what gets through."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from service.http.shedding import LoadShedder
from service.http.transport import GuardedHttpToolsProtocol, shed_load
from service.http.uploads import FORM_OVERHEAD_BYTES
from service.http.worker import Worker
from tests.service.http.conftest import MakeClient
from tests.service.http.test_classify import png, rejections
from tests.service.http.test_transport import guarded_server, read_reply

KEY = "infer-key-of-the-tests"
PHOTO = png((250, 10, 10))


class Counted:
    """The application, counting the requests that reach it."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.requests = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.requests += 1
        await self.app(scope, receive, send)


@dataclass
class Served:
    port: int
    worker: Worker
    app: Counted

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)


@pytest.fixture()
def served(make_client: MakeClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    """A worker of one place (so one held request fills it) whose inference needs a key."""
    api: FastAPI = make_client(max_inflight=1, infer_keys=[KEY]).app  # type: ignore[assignment]
    worker: Worker = api.state.worker
    monkeypatch.setattr(GuardedHttpToolsProtocol, "shedder", None)
    shed_load(LoadShedder(worker, api.state.access, api.routes))
    counted = Counted(api)
    with guarded_server(counted) as (_, port):
        yield Served(port, worker, counted)


def post(path: str, body: bytes, *headers: str, key: str | None = KEY) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: argos", "Content-Type: image/png", *headers]
    lines += [f"Authorization: Bearer {key}"] if key else []
    lines.append(f"Content-Length: {len(body)}")
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + body


def test_a_full_worker_refuses_at_the_connection_and_keeps_it_open(served: Served) -> None:
    rejected = rejections("overloaded")
    with served.connect() as sock:
        with served.worker.admission.slot():  # another request holds the only place
            sock.sendall(post("/classify", PHOTO))
            status, headers, body = read_reply(sock)
        assert status == 503
        assert headers["retry-after"] == "1"
        assert headers.get("connection") != "close"
        reply = json.loads(body)
        assert reply["error"] == "overloaded"
        assert "holds 1 of 1 images or jobs" in reply["detail"]
        assert served.app.requests == 0  # answered before any middleware, auth or parsing
        assert rejections("overloaded") == rejected + 1
        sock.sendall(post("/classify", PHOTO))  # the same connection, once there is room
        status, _, body = read_reply(sock)
    assert status == 200, body
    assert served.app.requests == 1
    assert served.worker.admission.inflight == 0


def test_a_v2_inference_request_is_refused_in_the_protocols_shape(served: Served) -> None:
    request = json.dumps(
        {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}
    ).encode()
    with served.connect() as sock, served.worker.admission.slot():
        sock.sendall(post("/v2/models/colours/infer", request))
        status, headers, body = read_reply(sock)
    assert (status, headers["retry-after"]) == (503, "1")
    assert list(json.loads(body)) == ["error"]
    assert served.app.requests == 0


def test_what_is_no_inference_or_not_authorized_reaches_the_application(served: Served) -> None:
    with served.connect() as sock, served.worker.admission.slot():
        sock.sendall(post("/classify", PHOTO, key=None))
        missing_key, _, _ = read_reply(sock)
    with served.connect() as sock, served.worker.admission.slot():
        sock.sendall(post("/classify", PHOTO, key="a-wrong-key"))
        wrong_key, _, _ = read_reply(sock)
    with served.connect() as sock, served.worker.admission.slot():
        sock.sendall(
            f"GET /model HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {KEY}\r\n\r\n".encode()
        )
        card, _, _ = read_reply(sock)
    assert (missing_key, wrong_key, card) == (401, 401, 200)
    assert served.app.requests == 3


def test_a_connection_that_asks_again_early_waits_for_its_retry_after(served: Served) -> None:
    with served.connect() as sock, served.connect() as other, served.worker.admission.slot():
        sock.sendall(post("/classify", PHOTO))
        assert read_reply(sock)[0] == 503
        asked = time.monotonic()
        sock.sendall(post("/classify", PHOTO))  # at once, ignoring Retry-After: 1
        status, headers, _ = read_reply(sock)
        held_s = time.monotonic() - asked
        other.sendall(post("/classify", PHOTO))  # another connection's first refusal
        started = time.monotonic()
        assert read_reply(other)[0] == 503
        other_s = time.monotonic() - started
    assert status == 503
    assert held_s >= 0.9  # the Retry-After of the first refusal, less the clock's grain
    assert other_s < held_s


def test_a_client_waiting_for_100_continue_is_refused_without_its_body(served: Served) -> None:
    with served.connect() as sock, served.worker.admission.slot():
        head = post("/classify", b"", "Expect: 100-continue").replace(
            b"Content-Length: 0", b"Content-Length: 5000000"
        )
        sock.sendall(head)
        status, headers, _ = read_reply(sock)
    assert status == 503
    assert headers["connection"] == "close"
    assert served.app.requests == 0


def test_a_body_past_the_largest_upload_is_not_read_to_its_end(served: Served) -> None:
    limit = served.worker.settings.max_upload_bytes + FORM_OVERHEAD_BYTES
    with served.connect() as sock, served.worker.admission.slot():
        sock.sendall(post("/classify", b"x" * (limit + 512 * 1024)))
        status, headers, _ = read_reply(sock)
    assert status == 503
    assert headers["connection"] == "close"


def scope(
    path: str = "/classify", method: str = "POST", port: int = 40000, **headers: str
) -> Scope:
    raw = [(b"authorization", f"Bearer {KEY}".encode())]
    raw += [(name.encode(), value.encode()) for name, value in headers.items()]
    return {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "query_string": b"",
        "headers": raw,
        "client": ("127.0.0.1", port),
    }


def test_the_shedder_only_turns_away_inference_on_a_full_worker(make_client: MakeClient) -> None:
    api: FastAPI = make_client(max_inflight=1, infer_keys=[KEY]).app  # type: ignore[assignment]
    shedder = LoadShedder(api.state.worker, api.state.access, api.routes)
    assert shedder(scope()) is None  # room
    with api.state.worker.admission.slot():
        assert shedder(scope("/model", "GET")) is None
        assert shedder(scope("/v2/repository/index")) is None  # admin, not inference
        assert shedder(scope("/nowhere")) is None
        for path in ("/classify", "/detect/render", "/v2/models/colours/versions/1/infer"):
            assert shedder(scope(path)) is not None, path
        api.state.worker.admission.draining = True  # the application says it is shutting down
        assert shedder(scope()) is None


def test_a_browser_of_an_allowed_origin_gets_the_applications_reply(
    make_client: MakeClient,
) -> None:
    api: FastAPI = make_client(max_inflight=1, cors_origins=["https://app.example"]).app  # type: ignore[assignment]
    shedder = LoadShedder(api.state.worker, api.state.access, api.routes)
    with api.state.worker.admission.slot():
        assert shedder(scope(origin="https://app.example")) is None  # its reply needs CORS
        assert shedder(scope()) is not None


def test_the_holds_follow_each_connections_retry_after(make_client: MakeClient) -> None:
    api: FastAPI = make_client(max_inflight=1).app  # type: ignore[assignment]
    now = [100.0]
    shedder = LoadShedder(api.state.worker, api.state.access, api.routes, clock=lambda: now[0])
    with api.state.worker.admission.slot():
        first = shedder(scope(port=1))
        now[0] += 0.25
        early = shedder(scope(port=1))
        other = shedder(scope(port=2))
        now[0] += 10
        later = shedder(scope(port=1))
    holds = [getattr(app, "hold_s", None) for app in (first, early, other, later)]
    assert holds[0] == holds[2] == holds[3] == 0.0
    assert holds[1] == pytest.approx(0.75)  # the first refusal's Retry-After: 1 s
