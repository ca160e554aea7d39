"""Helpers shared by the pet-door client tests, and a scriptable server on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_image(path: Path, mtime: float) -> None:
    path.write_bytes(b"\xff\xd8\xff" + path.name.encode())
    os.utime(path, (mtime, mtime))


Action = tuple[Any, ...]
"""What the loopback server does with one request:

- ``("json", status, body)``: answer with a JSON body;
- ``("bytes", status, content_type, data)``: answer with raw bytes;
- ``("stall",)``: say nothing until the server stops;
- ``("trickle",)``: announce a 10 kB body, then send one byte every 0.1 s;
- ``("endless",)``: stream an unending body as fast as the client reads it.
"""
Script = Callable[[str, str, int], Action]
"""(method, path, how many requests that path has had, this one included) → action."""


class LoopbackServer:
    """An HTTP server on 127.0.0.1 that does what a test's script says, stalls included."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: Counter[str] = Counter()
        self.released = threading.Event()
        self._lock = threading.Lock()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.released.set()
        self._http.shutdown()
        self._http.server_close()

    def count(self, method: str, path: str) -> int:
        with self._lock:
            self.requests[path] += 1
            return self.requests[path]


def _handler(server: LoopbackServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self._answer("POST")

        def _answer(self, method: str) -> None:
            path = self.path.split("?")[0]
            action = server.script(method, path, server.count(method, path))
            with contextlib.suppress(OSError):  # the client gave up, as these tests provoke
                self._act(action)

        def _act(self, action: Action) -> None:
            kind = action[0]
            if kind == "json":
                self._send(action[1], "application/json", json.dumps(action[2]).encode())
            elif kind == "bytes":
                self._send(action[1], action[2], action[3])
            elif kind == "stall":
                server.released.wait()
            elif kind == "trickle":
                self._head(200, "image/jpeg", 10_000)
                while not server.released.wait(0.1):
                    self.wfile.write(b"\x00")
                    self.wfile.flush()
            elif kind == "endless":
                self._head(200, "image/jpeg", None)
                while not server.released.is_set():
                    self.wfile.write(b"\x00" * 65536)
            else:
                raise ValueError(f"unknown action {kind!r}")

        def _head(self, status: int, content_type: str, length: int | None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            if length is not None:
                self.send_header("Content-Length", str(length))
            self.send_header("Connection", "close")
            self.end_headers()

        def _send(self, status: int, content_type: str, data: bytes) -> None:
            self._head(status, content_type, len(data))
            self.wfile.write(data)

    return Handler


CARD = {
    "name": "pets",
    "version": "1",
    "labels": ["dog", "cat", "fox"],
    "label_groups": {"canine": [0, 2]},
}


def classify_reply(scores: dict[str, float]) -> dict[str, Any]:
    """A ``/classify`` reply as Argos sends it, for ``scores`` of the card's labels."""
    return {
        "model": {"name": CARD["name"], "version": CARD["version"]},
        "predictions": [
            {"label": label, "index": CARD["labels"].index(label), "score": score}
            for label, score in sorted(scores.items(), key=lambda item: -item[1])
        ],
        "groups": [],
    }


def fake_argos(classify: Callable[[int], Action] | None = None) -> Script:
    """A script that answers like Argos: its card, and a dog on every frame unless
    ``classify`` (given the request's number) says otherwise."""
    dog = ("json", 200, classify_reply({"dog": 0.95, "cat": 0.01}))

    def script(method: str, path: str, count: int) -> Action:
        if path == "/model":
            return ("json", 200, CARD)
        if path == "/classify":
            return classify(count) if classify else dog
        if path == "/snapshot":
            return ("bytes", 200, "image/jpeg", b"\xff\xd8\xff frame")
        return ("json", 404, {"error": "not_found", "detail": path})

    return script
