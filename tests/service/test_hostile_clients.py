"""Hostile clients against a real two-worker server: what they cost, and what a normal
client sees meanwhile.

Each test runs one hostile load for a bounded time while a normal client sends
``POST /classify`` ten times a second, and asserts that the normal client gets its 200s
(at least 99 %, p99 within a second), that the server's memory stays bounded, and that
no reply anywhere is a 500. The loads are scaled for CI (two cores shared by the server,
the hostile clients and the normal one); ``HOSTILE_SCALE`` multiplies them.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import random
import select
import signal
import socket
import string
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest

from benchmarks.load import closed_loop

pytestmark = pytest.mark.integration

SCALE = float(os.environ.get("HOSTILE_SCALE", "1"))
MAX_GROWTH_MB = 100
MIN_GOODPUT_IN_CI = 0.5


def scaled(count: int) -> int:
    return max(1, int(count * SCALE))


@dataclass
class Server:
    url: str
    pid: int

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.url.removeprefix("http://").split(":")
        return host, int(port)

    def rss_mb(self) -> float:
        root = psutil.Process(self.pid)
        total = 0
        for process in [root, *root.children(recursive=True)]:
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total / 2**20

    def connect(self, timeout: float = 10) -> socket.socket:
        return socket.create_connection(self.address, timeout=timeout)


@contextmanager
def serving(default_model: str) -> Iterator[Server]:
    from harness.local_server import local_server

    with local_server({"ARGOS_MODEL": default_model, "ARGOS_WORKERS": "2"}, quiet=True) as up:
        yield Server(up.url, up.pid)


@pytest.fixture(scope="module")
def server(default_model: str, photo: bytes) -> Iterator[Server]:
    with serving(default_model) as running:
        warm_up(running, photo)
        yield running


def warm_up(server: Server, photo: bytes) -> None:
    """Ordinary requests first, so that lazy imports and onnxruntime's memory arena in
    both workers are not counted against the first hostile load."""
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for _ in range(20):
            reply = http.post("/classify", content=photo, headers={"Content-Type": "image/jpeg"})
            assert reply.status_code == 200, reply.text


@pytest.fixture(scope="module")
def photo(images: Path) -> bytes:
    return (images / "cat_720p.jpg").read_bytes()


@dataclass
class NormalClient:
    """Sends ``POST /classify`` at ``rate`` per second from one thread (open loop: a slow
    reply does not delay the next request's schedule, it is counted as late)."""

    server: Server
    photo: bytes
    rate: float = 10
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> NormalClient:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        headers = {"Content-Type": "image/jpeg"}
        with httpx.Client(base_url=self.server.url, timeout=30) as http:
            due = time.perf_counter()
            while not self._stop.is_set():
                try:
                    status = http.post("/classify", content=self.photo, headers=headers).status_code
                except httpx.HTTPError:
                    status = 0
                self.statuses[status] += 1
                self.latencies.append(time.perf_counter() - due)
                due += 1 / self.rate
                self._stop.wait(max(0.0, due - time.perf_counter()))

    def check(self) -> None:
        total = sum(self.statuses.values())
        p99 = float(np.percentile(self.latencies, 99))
        print(f"normal client: {dict(self.statuses)}, p99 {p99:.3f} s")
        assert total >= 20
        assert self.statuses[200] >= 0.99 * total, dict(self.statuses)
        assert p99 <= 1.0


class Memory:
    """Peak growth of the server's resident memory while a block runs."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.baseline = server.rss_mb()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> Memory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        print(f"server RSS +{self.grown_mb:.0f} MB (peak)")

    @property
    def grown_mb(self) -> float:
        return self.peak - self.baseline

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.server.rss_mb())


def run_threads(count: int, target: Callable[[int], None]) -> None:
    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)


def reply_status(sock: socket.socket) -> int:
    """The status of the reply on ``sock``; 0 when the connection ends without one."""
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                return 0
            data += chunk
    except OSError:
        return 0
    return int(data.split(b" ", 2)[1])


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``sock`` within ``seconds`` (anything it sends is read)."""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


# Rows: slow bodies, endless heads, slow heads


def test_slow_bodies_are_cut_off_and_hold_nothing(server: Server, photo: bytes) -> None:
    """Clients trickle a 1 MiB body at 1 KiB/s and reconnect when cut off."""
    stop = threading.Event()
    outcomes: Counter[int] = Counter()
    lifetimes: list[float] = []

    def trickle(_: int) -> None:
        while not stop.is_set():
            try:
                sock = server.connect()
            except OSError:
                outcomes[-1] += 1
                stop.wait(0.2)
                continue
            with sock:
                opened = time.monotonic()
                try:
                    sock.sendall(
                        b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                        b"Content-Length: 1048576\r\n\r\n"
                    )
                    while not stop.wait(1) and not select.select([sock], [], [], 0)[0]:
                        sock.sendall(b"\xff" * 1024)
                except OSError:
                    pass
                if stop.is_set():
                    return
                outcomes[reply_status(sock)] += 1
                lifetimes.append(time.monotonic() - opened)

    with Memory(server) as memory, NormalClient(server, photo) as normal:
        hostile = threading.Thread(target=run_threads, args=(scaled(40), trickle), daemon=True)
        hostile.start()
        time.sleep(15)
        stop.set()
        hostile.join(30)
    print(f"slow bodies: {dict(outcomes)}, longest held {max(lifetimes, default=0):.1f} s")
    normal.check()
    assert memory.grown_mb <= MAX_GROWTH_MB
    assert outcomes[408] >= scaled(40), "slow bodies were not cut off"
    assert max(lifetimes) < 10
    assert 500 not in outcomes


def test_endless_and_oversized_heads_are_refused(server: Server, photo: bytes) -> None:
    outcomes: Counter[int] = Counter()
    sent_mb: list[float] = []

    def endless(_: int) -> None:
        line = b"X-Endless-" + b"a" * 60 + b": " + b"b" * 1000 + b"\r\n"
        sent = 0
        with server.connect() as sock:
            sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n")
            try:
                while sent < 64 * 2**20:
                    sock.sendall(line * 64)
                    sent += len(line) * 64
            except OSError:
                pass
            sent_mb.append(sent / 2**20)
            outcomes[reply_status(sock)] += 1

    def single_header(size: int) -> None:
        with server.connect() as sock:
            try:
                sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Big: ")
                for _ in range(size // 65536):
                    sock.sendall(b"a" * 65536)
                sock.sendall(b"\r\n\r\n")
            except OSError:
                pass
            outcomes[reply_status(sock)] += 1

    def many_headers() -> None:
        with server.connect() as sock:
            try:
                sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n")
                for start in range(0, 100_000, 1000):
                    sock.sendall(b"".join(b"X-%d: v\r\n" % i for i in range(start, start + 1000)))
                sock.sendall(b"\r\n")
            except OSError:
                pass
            outcomes[reply_status(sock)] += 1

    with Memory(server) as memory, NormalClient(server, photo) as normal:
        run_threads(5, endless)
        for size in (64 * 2**10, 2**20, 16 * 2**20, 64 * 2**20):
            single_header(size)
        many_headers()
        time.sleep(5)  # the normal client's sample
    print(f"heads: {dict(outcomes)}, sent before the cut: {sorted(sent_mb)} MB")
    normal.check()
    assert memory.grown_mb <= MAX_GROWTH_MB
    assert 200 not in outcomes and 500 not in outcomes
    assert max(sent_mb) < 32, "an endless head was read for tens of MB"


def test_slow_and_silent_heads_time_out(server: Server, photo: bytes) -> None:
    sockets: list[socket.socket] = []
    stop = threading.Event()
    for _ in range(scaled(150)):
        sock = server.connect()
        sock.sendall(b"GET /readyz HTTP/1.1\r\n")
        sockets.append(sock)
    silent = server.connect()

    def drip() -> None:
        while not stop.wait(2):
            for sock in sockets:
                with suppress(OSError):
                    sock.sendall(b"X")

    dripping = threading.Thread(target=drip, daemon=True)
    with Memory(server) as memory, NormalClient(server, photo) as normal:
        dripping.start()
        time.sleep(14)
        open_heads = sum(not closed_within(sock, 0.01) for sock in sockets)
        silent_open = not closed_within(silent, 0.01)
        stop.set()
    dripping.join()
    for sock in [*sockets, silent]:
        sock.close()
    print(f"after 14 s: {open_heads} of {len(sockets)} slow heads open, silent open: {silent_open}")
    normal.check()
    assert memory.grown_mb <= MAX_GROWTH_MB
    assert open_heads == 0
    assert not silent_open


# Rows: random paths, JSON bombs, header values


def _scrape(server: Server) -> tuple[str, float]:
    started = time.perf_counter()
    text = httpx.get(f"{server.url}/metrics", timeout=60).text
    return text, time.perf_counter() - started


def _series(text: str) -> int:
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def test_random_paths_add_no_metric_series(server: Server) -> None:
    def word() -> str:
        return "".join(random.choices(string.ascii_lowercase + string.digits, k=12))

    def paths(count: int) -> list[tuple[str, str]]:
        made = []
        for i in range(count):
            kind = i % 3
            if kind == 0:
                made.append(("GET", f"/{word()}"))
            elif kind == 1:
                made.append(("GET", f"/v2/models/{word()}/ready"))
            else:
                made.append(("POST", f"/v2/repository/models/{word()}/load"))
        return made

    statuses: Counter[int] = Counter()

    def send(requests: list[tuple[str, str]]) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for method, path in requests:
                statuses[http.request(method, path).status_code] += 1

    send(paths(30))  # every label the random paths will use exists from here on
    before, _ = _scrape(server)
    before_s = min(_scrape(server)[1] for _ in range(5))
    batches = [paths(scaled(10_000) // 4) for _ in range(4)]
    run_threads(4, lambda i: send(batches[i]))
    after, _ = _scrape(server)
    after_s = min(_scrape(server)[1] for _ in range(5))
    print(
        f"{sum(statuses.values())} requests {dict(statuses)}: series {_series(before)} -> "
        f"{_series(after)}, /metrics {len(before):,} -> {len(after):,} bytes, "
        f"{before_s * 1000:.0f} -> {after_s * 1000:.0f} ms"
    )
    assert 500 not in statuses
    assert _series(after) - _series(before) <= 10
    assert len(after) <= 1.1 * len(before)
    assert after_s <= 1.1 * before_s + 0.05  # plus 50 ms of scheduling noise


def test_a_v2_json_body_of_countless_arrays_costs_little(server: Server, photo: bytes) -> None:
    arrays = b"[" + b",".join([b"[]"] * 6_900_000) + b"]"
    body = b'{"inputs":[{"name":"image","shape":[1],"datatype":"BYTES","data":%s}]}' % arrays
    statuses: Counter[int] = Counter()
    seconds: list[float] = []

    def send(_: int) -> None:
        started = time.perf_counter()
        reply = httpx.post(
            f"{server.url}/v2/models/imagenet-mobilenetv2/infer", content=body, timeout=60
        )
        seconds.append(time.perf_counter() - started)
        statuses[reply.status_code] += 1

    size_mb = len(body) / 2**20
    with NormalClient(server, photo) as normal:
        started = time.monotonic()
        with Memory(server) as one:
            send(0)
            time.sleep(0.5)
        with Memory(server) as eight:
            run_threads(8, send)
            time.sleep(0.5)
        time.sleep(max(0.0, started + 3 - time.monotonic()))  # enough normal requests to judge
    print(f"{size_mb:.1f} MB bodies: {dict(statuses)}, slowest {max(seconds):.2f} s")
    normal.check()
    assert statuses == Counter({400: 9})
    assert one.grown_mb <= 10 * size_mb
    assert eight.grown_mb <= 8 * 10 * size_mb


def test_non_ascii_digits_in_length_headers_are_a_400(server: Server) -> None:
    image = base64.b64encode(b"x").decode()
    body = json.dumps(
        {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [image]}]}
    ).encode()
    statuses: Counter[int] = Counter()
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for _ in range(40):
            reply = http.post(
                "/v2/models/imagenet-mobilenetv2/infer",
                content=body,
                headers={"Inference-Header-Content-Length": b"\xb2"},
            )
            statuses[reply.status_code] += 1
    assert statuses == Counter({400: 40})


# Rows: connections landing on one worker


def worker_processes(server: Server) -> list[psutil.Process]:
    return [
        process
        for process in psutil.Process(server.pid).children(recursive=True)
        if "_bentoml_impl.worker" in " ".join(process.cmdline())
    ]


def worker_connections(server: Server) -> list[int]:
    """Each worker's established connections on the server's port, fewest first."""
    port = server.address[1]
    counts = []
    for process in worker_processes(server):
        with suppress(psutil.Error):
            established = process.net_connections("tcp")
            counts.append(
                sum(c.status == "ESTABLISHED" and c.laddr.port == port for c in established)
            )
    return sorted(counts)


def test_connections_that_all_landed_on_one_worker_spread_over_both(
    server: Server, photo: bytes
) -> None:
    """A burst of keep-alive connections while one worker cannot accept: all land on the
    other, which lets connections go until each worker holds about half."""
    workers = worker_processes(server)
    assert len(workers) == 2
    host, port = server.address
    clients = [http.client.HTTPConnection(host, port, timeout=30) for _ in range(16)]
    workers[1].suspend()
    try:
        for client in clients:
            client.connect()
        deadline = time.monotonic() + 10
        while worker_connections(server) != [0, 16] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert worker_connections(server) == [0, 16]
    finally:
        workers[1].resume()
    splits = []
    for _ in range(5):  # rounds of one request per connection
        for client in clients:
            client.request("POST", "/classify", photo, {"Content-Type": "image/jpeg"})
            reply = client.getresponse()
            reply.read()
            assert reply.status == 200
        splits.append(worker_connections(server))
    for client in clients:
        client.close()
    print(f"connections per worker after each round: {splits}")
    fewer, more = splits[-1]
    assert more - fewer <= 3, splits  # the slack of 2, and one on its way


# Rows: clients that honour Retry-After, SIGTERM under load


def test_refused_clients_read_their_503(server: Server, photo: bytes) -> None:
    """Many keep-alive clients that honour Retry-After: every reply is a 200 or a 503."""
    saturation = closed_loop(server.url, photo, 8, warmup_s=2, duration_s=5, counters=dict).rps
    overload = closed_loop(
        server.url,
        photo,
        scaled(400),
        warmup_s=3,
        duration_s=10,
        counters=dict,
        honour_retry_after=True,
    )
    goodput = overload.rps
    print(
        f"saturation {saturation:.1f} req/s; {scaled(400)} clients: {overload.statuses}, "
        f"goodput {goodput:.1f} req/s ({goodput / saturation:.2f})"
    )
    assert set(overload.statuses) <= {200, 503}, overload.statuses
    # The target is 0.8 (``python -m benchmarks --overload-clients 400``, row f); here the
    # 400 client threads share the server's two cores, so only a collapse is failed.
    assert goodput >= MIN_GOODPUT_IN_CI * saturation


def test_sigterm_under_load_answers_or_refuses_every_request(
    default_model: str, photo: bytes
) -> None:
    """Every client connects, then all upload at once; SIGTERM comes 0.5 s later."""
    outcomes: Counter[str] = Counter()
    clients = scaled(300)
    with serving(default_model) as running:
        host, port = running.address
        go = threading.Barrier(clients + 1)

        def upload(_: int) -> None:
            connection = http.client.HTTPConnection(host, port, timeout=60)
            try:
                connection.connect()
            except OSError:
                outcomes["refused"] += 1
                go.wait()
                return
            go.wait()
            try:
                connection.request("POST", "/classify", photo, {"Content-Type": "image/jpeg"})
                reply = connection.getresponse()
                reply.read()
                outcomes[str(reply.status)] += 1
            except ConnectionRefusedError:
                outcomes["refused"] += 1
            except (OSError, http.client.HTTPException) as error:
                outcomes[type(error).__name__] += 1
            finally:
                connection.close()

        threads = [threading.Thread(target=upload, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        go.wait()
        time.sleep(0.5)
        os.kill(running.pid, signal.SIGTERM)
        for thread in threads:
            thread.join(90)
    print(f"SIGTERM 0.5 s into {clients} uploads: {dict(outcomes)}")
    assert set(outcomes) <= {"200", "503", "refused"}, dict(outcomes)
