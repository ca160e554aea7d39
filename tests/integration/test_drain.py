"""SIGTERM with hundreds of uploads in flight: every accepted request is answered."""

from __future__ import annotations

import http.client
import os
import signal
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.local_server import local_server

pytestmark = pytest.mark.integration

UPLOADS = 300


def upload(
    url: str,
    body: bytes,
    sent: threading.Barrier,
    replies: list[object],
    headers: dict[str, str] | None = None,
) -> None:
    """One upload on its own connection; records the status (0: no reply), and the body of
    any reply but a 200."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    try:
        headers = {"Content-Type": "image/jpeg"} | (headers or {})
        connection.request("POST", "/classify", body, headers)
        sent.wait()
        response = connection.getresponse()
        text = response.read()
        replies.append(200 if response.status == 200 else (response.status, text[:200]))
    except (OSError, http.client.HTTPException, threading.BrokenBarrierError):
        replies.append(0)
    finally:
        connection.close()


def _wait_until_admitted(url: str, count: int, timeout_s: float = 60) -> None:
    """Until the workers admitted ``count`` requests (``argos_admitted_requests_total``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        scrape = httpx.get(f"{url}/metrics", timeout=10).text
        admitted = sum(
            sample.value
            for family in text_string_to_metric_families(scrape)
            for sample in family.samples
            if sample.name == "argos_admitted_requests_total"
        )
        if admitted >= count:
            return
        time.sleep(0.1)
    raise TimeoutError(f"the server did not admit {count} requests in {timeout_s} s")


def readiness(url: str) -> int:
    """``/readyz`` status on a new connection; 0 when the connection is refused."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        connection.request("GET", "/readyz")
        return connection.getresponse().status
    except OSError:
        return 0
    finally:
        connection.close()


def test_sigterm_answers_every_accepted_upload_then_exits(default_model: str, images: Path) -> None:
    body = (images / "cat_720p.jpg").read_bytes()
    replies: list[object] = []
    # Admit and queue every upload: this test is about the drain, not admission control.
    env = {
        "ARGOS_MODEL": default_model,
        "ARGOS_MAX_INFLIGHT": str(UPLOADS),
        "ARGOS_QUEUE_TIMEOUT_MS": "120000",
    }
    with local_server(env, quiet=True) as server:
        assert readiness(server.url) == 200
        sent = threading.Barrier(UPLOADS + 1)
        clients = [
            threading.Thread(target=upload, args=(server.url, body, sent, replies))
            for _ in range(UPLOADS)
        ]
        for client in clients:
            client.start()
        sent.wait(timeout=60)  # every request is written out
        _wait_until_admitted(server.url, UPLOADS)  # ... and admitted by a worker
        os.killpg(server.pid, signal.SIGTERM)
        terminated = time.monotonic()
        time.sleep(0.3)
        draining_readiness = readiness(server.url)
        for client in clients:
            client.join(timeout=90)
        psutil.Process(server.pid).wait(timeout=max(1.0, terminated + 60 - time.monotonic()))
        exit_s = time.monotonic() - terminated

    assert draining_readiness != 200
    assert len(replies) == UPLOADS
    assert replies.count(200) == UPLOADS, [reply for reply in replies if reply != 200][:5]
    assert exit_s <= 60
