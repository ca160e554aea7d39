"""What the connection guard costs per request: ``python -m benchmarks.guards``.

Serves a small app with uvicorn's httptools protocol and with Argos' guarded one, in turn
and several times each, and sends the same keep-alive ``POST`` requests (a photo-sized
body, a browser's dozen headers) to each; prints the server's CPU time per request. Only
the transport differs, so the difference is the guard's cost, free of the model's noise.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import subprocess
import sys
import time

import psutil

from harness.local_server import free_port

SERVER = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from service.http.transport import GuardedHttpToolsProtocol

async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"bytes": len(await request.body())})

app = Starlette(routes=[Route("/echo", echo, methods=["POST"])])
protocol = GuardedHttpToolsProtocol if sys.argv[2] == "guarded" else "httptools"
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), http=protocol, log_level="error")
"""
HEADERS = {
    "Content-Type": "image/jpeg",
    "Accept": "application/json",
    "Accept-Encoding": "gzip, deflate",
    "Accept-Language": "en-GB,en;q=0.9",
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120 Safari/537.36",
    "Cache-Control": "no-cache",
    "X-Request-Id": "0123456789abcdef",
    "Authorization": "Bearer " + "k" * 40,
}


def server_cpu_ms_per_request(protocol: str, body: bytes, requests: int) -> float:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", SERVER, str(port), protocol])
    try:
        connection = _connect(port)
        for _ in range(50):  # warm up
            _post(connection, body)
        server = psutil.Process(process.pid)
        before = server.cpu_times()
        for _ in range(requests):
            _post(connection, body)
        after = server.cpu_times()
        connection.close()
    finally:
        process.terminate()
        process.wait()
    cpu_s = (after.user - before.user) + (after.system - before.system)
    return 1000 * cpu_s / requests


def _connect(port: int) -> http.client.HTTPConnection:
    deadline = time.monotonic() + 30
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.connect()
            return connection
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _post(connection: http.client.HTTPConnection, body: bytes) -> None:
    connection.request("POST", "/echo", body, HEADERS)
    reply = connection.getresponse()
    reply.read()
    assert reply.status == 200, reply.status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--body-bytes", type=int, default=105_000)
    args = parser.parse_args()
    body = b"\xff" * args.body_bytes
    results: dict[str, list[float]] = {"httptools": [], "guarded": []}
    for _ in range(args.rounds):
        for protocol in results:
            results[protocol].append(server_cpu_ms_per_request(protocol, body, args.requests))
    for protocol, values in results.items():
        shown = ", ".join(f"{value:.3f}" for value in values)
        print(f"{protocol:>9}: median {statistics.median(values):.3f} core-ms/req ({shown})")
    extra = statistics.median(results["guarded"]) - statistics.median(results["httptools"])
    print(f"the guard: {extra:+.3f} core-ms/req")


if __name__ == "__main__":
    main()
