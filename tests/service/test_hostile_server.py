"""The hostile uploads against a real server: status, time, memory growth, readiness.

One server for the module; its resident memory is summed over all its processes and
sampled while each request runs. Memory freed after one request may be reused by the next
without growing the server, so the cheap refusals run first and the large decodes last.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest

from tests.service.hostile import ico_around, png

pytestmark = pytest.mark.integration

MAX_GROWTH_MB = 400
MAX_SECONDS = 10
UPLOAD_CAP = 20 * 1024 * 1024
CHUNK = 64 * 1024


class Server:
    def __init__(self, url: str, pid: int) -> None:
        self.url = url
        self.process = psutil.Process(pid)

    def rss_mb(self) -> float:
        total = 0
        for process in [self.process, *self.process.children(recursive=True)]:
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total / 2**20


@pytest.fixture(scope="module")
def server(default_model: str) -> Iterator[Server]:
    from harness.local_server import local_server

    with local_server({"ARGOS_MODEL": default_model}) as running:
        warm_up(running.url)
        yield Server(running.url, running.pid)


def warm_up(url: str) -> None:
    """One ordinary request per route, so that lazy imports and onnxruntime's memory arena
    are not counted against the first hostile upload."""
    photo = png(640, 480, colour_type=2)
    with httpx.Client(base_url=url, timeout=60) as http:
        for path in ("/classify", "/detect"):
            reply = http.post(path, content=photo, headers={"Content-Type": "image/png"})
            assert reply.status_code == 200, reply.text


class Watch:
    """Peak RSS growth of the server and readiness probes while a request runs."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.baseline = server.rss_mb()
        self.peak = self.baseline
        self.slowest_livez = 0.0
        self._done = threading.Event()
        self._threads = [
            threading.Thread(target=self._sample),
            threading.Thread(target=self._probe),
        ]

    def __enter__(self) -> Watch:
        self.started = time.perf_counter()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.seconds = time.perf_counter() - self.started
        self._done.set()
        for thread in self._threads:
            thread.join()

    @property
    def grown_mb(self) -> float:
        return self.peak - self.baseline

    def _sample(self) -> None:
        while not self._done.wait(0.02):
            self.peak = max(self.peak, self.server.rss_mb())

    def _probe(self) -> None:
        with httpx.Client(base_url=self.server.url, timeout=30) as http:
            while not self._done.is_set():
                started = time.perf_counter()
                assert http.get("/livez").status_code == 200
                self.slowest_livez = max(self.slowest_livez, time.perf_counter() - started)
                self._done.wait(0.05)


def check(server: Server, watch: Watch) -> None:
    grown, livez = watch.grown_mb, watch.slowest_livez
    print(f"{watch.seconds:.2f} s, server RSS +{grown:.0f} MB, slowest livez {livez:.2f} s")
    assert watch.seconds < MAX_SECONDS
    assert watch.grown_mb < MAX_GROWTH_MB, f"server RSS grew {watch.grown_mb:.0f} MB"
    assert watch.slowest_livez < MAX_SECONDS / 2
    assert httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200


def post(server: Server, path: str, **kwargs: object) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        return http.post(path, **kwargs)


def test_ico_hiding_a_huge_png(server: Server) -> None:
    upload = ico_around(png(40_000, 40_000, bit_depth=1))
    with Watch(server) as watch:
        reply = post(server, "/classify", files={"image": ("icon.ico", upload, "image/x-icon")})
    assert reply.status_code == 422
    assert "send JPEG, PNG, BMP, GIF, WEBP, TIFF" in reply.json()["detail"]
    check(server, watch)


def test_detect_with_tiny_windows_on_a_one_bit_image(server: Server) -> None:
    upload = png(7000, 7000, bit_depth=1)
    with Watch(server) as watch:
        reply = post(
            server,
            "/detect",
            params={"window_sizes": [0.0001], "overlap": 0.9},
            content=upload,
            headers={"Content-Type": "image/png"},
        )
    assert reply.status_code == 422
    assert "need 49000000 windows on a 7000x7000 image; the limit is" in reply.json()["detail"]
    check(server, watch)


def test_chunked_multipart_of_64_mib_without_length(server: Server) -> None:
    boundary = "hostile"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
        'filename="big.png"\r\nContent-Type: image/png\r\n\r\n'
    ).encode()
    pieces = [head, *[b"\x00" * CHUNK] * (64 * 1024 * 1024 // CHUNK)]
    pieces.append(f"\r\n--{boundary}--\r\n".encode())
    with Watch(server) as watch:
        status, body, sent_before_reply = send_chunked(
            server.url, "/classify", f"multipart/form-data; boundary={boundary}", pieces
        )
    assert status == 413, body
    assert f"the limit is {UPLOAD_CAP:,} bytes" in body
    assert sent_before_reply < 2 * UPLOAD_CAP
    check(server, watch)


def send_chunked(
    url: str, path: str, content_type: str, pieces: list[bytes]
) -> tuple[int, str, int]:
    """POST ``pieces`` with chunked transfer encoding while reading the reply; returns the
    status, the body and how many bytes had been sent when the reply began."""
    host, port = url.removeprefix("http://").split(":")
    sent = 0
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode())

        def send() -> None:
            nonlocal sent
            try:
                for piece in pieces:
                    sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                    sent += len(piece)
                sock.sendall(b"0\r\n\r\n")
            except OSError:
                pass  # the server answered and closed the connection

        sender = threading.Thread(target=send)
        sender.start()
        reply = sock.recv(65536)
        sent_before_reply = sent
        while chunk := _recv(sock):
            reply += chunk
        sender.join()
    status_line, _, rest = reply.partition(b"\r\n")
    return int(status_line.split()[1]), rest.decode("utf-8", "replace"), sent_before_reply


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


@pytest.mark.parametrize("path", ["/classify", "/detect"])
def test_sixteen_bit_greyscale_of_49_megapixels(server: Server, path: str) -> None:
    upload = png(7000, 7000, bit_depth=16)
    with Watch(server) as watch:
        reply = post(server, path, content=upload, headers={"Content-Type": "image/png"})
    assert reply.status_code in (200, 422), reply.text
    check(server, watch)
