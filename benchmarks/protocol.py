"""One image costs the same through ``POST /classify`` and the Open Inference Protocol.

Starts a real server with its gRPC port, then sends the same photo through ``/classify``
(the raw JPEG), ``/v2/models/NAME/infer`` in Triton's binary tensor form (what
``tritonclient`` sends by default) and in the JSON form (base64), and gRPC ``ModelInfer``
(``tritonclient.grpc``), one request at a time, in interleaved rounds so that drift hits
every path alike. Prints the server's CPU time per request (all its processes; the median
over blocks) and each path's ratio to ``/classify``.

    python -m benchmarks.protocol [--image PHOTO] [--requests 1440] [--env ARGOS_WORKERS=1]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from benchmarks.report import table
from benchmarks.server import Server, serve
from harness.local_server import free_port, shared_dir
from service.http.uploads import IMAGE_FIELD
from service.settings import DEFAULT_MODEL


@dataclass(frozen=True)
class Way:
    """One way of sending the photo: over HTTP, where to, the body and its headers."""

    label: str
    path: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class Call:
    """One way of sending the photo that a client library makes: ``send()`` is True on
    success."""

    label: str
    send: Callable[[], bool]


@dataclass
class Tally:
    requests: int = 0
    errors: int = 0
    block_core_ms: list[float] = field(default_factory=list)  # server CPU ms per request
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def core_ms(self) -> float:
        """The median over blocks: robust to a block that other work on the machine slowed."""
        return statistics.median(self.block_core_ms)


def ways_to_send(image: bytes, model: str) -> list[Way]:
    """The photo as ``/classify`` takes it (top 5 labels back), and as the v2 tensor encodings
    carry it: binary with all probabilities back (``tritonclient``'s default), binary and JSON
    with the top 5 back (the classification extension)."""
    infer = f"/v2/models/{model}/infer"
    top_5 = [triton.InferRequestedOutput("probabilities", binary_data=False, class_count=5)]
    binary, binary_top_5 = (_binary_body(image, outputs) for outputs in (None, top_5))
    as_json = {
        "inputs": [
            {
                "name": IMAGE_FIELD,
                "shape": [1],
                "datatype": "BYTES",
                "data": [base64.b64encode(image).decode()],
            }
        ],
        "outputs": [{"name": "probabilities", "parameters": {"classification": 5}}],
    }
    return [
        Way("/classify", "/classify", image, {"Content-Type": "image/jpeg"}),
        Way("/v2 binary, probabilities", infer, *binary),
        Way("/v2 binary, top 5", infer, *binary_top_5),
        Way("/v2 JSON, top 5", infer, json.dumps(as_json).encode(), {}),
    ]


def grpc_calls(image: bytes, model: str, url: str) -> list[Call]:
    """The photo through ``tritonclient.grpc``: all probabilities back, and the top 5."""
    client = triton_grpc.InferenceServerClient(url)
    tensor = triton_grpc.InferInput(IMAGE_FIELD, [1], "BYTES")
    tensor.set_data_from_numpy(np.array([image], dtype=np.object_))
    top_5 = [triton_grpc.InferRequestedOutput("probabilities", class_count=5)]

    def infer(outputs: list[triton_grpc.InferRequestedOutput] | None) -> bool:
        try:
            client.infer(model, [tensor], outputs=outputs, client_timeout=60)
        except InferenceServerException:
            return False
        return True

    return [
        Call("gRPC, probabilities", lambda: infer(None)),
        Call("gRPC, top 5", lambda: infer(top_5)),
    ]


def _binary_body(
    image: bytes, outputs: list[triton.InferRequestedOutput] | None
) -> tuple[bytes, dict[str, str]]:
    """What ``tritonclient`` sends: the JSON object, then the image with its length."""
    tensor = triton.InferInput(IMAGE_FIELD, [1], "BYTES")
    tensor.set_data_from_numpy(np.array([image], dtype=np.object_))
    body, header_length = triton.InferenceServerClient.generate_request_body(
        [tensor], outputs=outputs
    )
    return body, {"Inference-Header-Content-Length": str(header_length)}


def measure(
    server: Server, ways: list[Way | Call], *, requests: int, rounds: int
) -> dict[str, Tally]:
    """Send ``requests`` per path, one at a time, in ``rounds`` interleaved blocks; the
    order of the paths rotates from round to round, so that each takes each place."""
    tallies = {way.label: Tally() for way in ways}
    connection = _connect(server.url)
    per_round = max(1, requests // rounds)
    for round_ in range(rounds):
        for way in ways[round_ % len(ways) :] + ways[: round_ % len(ways)]:
            # A new connection per block: the server closes one idle past its keep-alive
            # timeout (5 s) while the gRPC blocks run.
            connection.close()
            before = _server_cpu_s(server)
            tally = tallies[way.label]
            for _ in range(per_round):
                started = time.perf_counter()
                ok = way.send() if isinstance(way, Call) else _post(connection, way)
                tally.latencies_ms.append(1000 * (time.perf_counter() - started))
                tally.requests += ok
                tally.errors += not ok
            tally.block_core_ms.append(1000 * (_server_cpu_s(server) - before) / per_round)
    connection.close()
    return tallies


def report(tallies: dict[str, Tally]) -> str:
    baseline = tallies["/classify"].core_ms
    rows = [
        [
            label,
            tally.requests,
            tally.errors,
            f"{tally.core_ms:.2f}",
            f"{min(tally.block_core_ms):.2f}-{max(tally.block_core_ms):.2f}",
            f"{tally.core_ms / baseline:.2f}",
            f"{statistics.median(tally.latencies_ms):.2f}",
        ]
        for label, tally in tallies.items()
    ]
    header = [
        "path", "requests", "errors", "server core-ms/req", "blocks min-max", "vs /classify",
        "p50 ms",
    ]  # fmt: skip
    return table(header, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.protocol", description=__doc__)
    parser.add_argument("--image", type=Path, default=shared_dir() / "images" / "cat_720p.jpg")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="a model name the server serves")
    parser.add_argument("--requests", type=int, default=1440, help="per path")
    parser.add_argument("--rounds", type=int, default=36, help="interleaved blocks per path")
    parser.add_argument("--warmup", type=int, default=20, help="requests per path first")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    grpc_port = free_port()
    env = {"ARGOS_GRPC_PORT": str(grpc_port), "ARGOS_GRPC_HOST": "127.0.0.1"}
    env |= dict(pair.split("=", 1) for pair in args.env)
    image = args.image.read_bytes()
    with serve(env) as server:
        ways = [
            *ways_to_send(image, args.model),
            *grpc_calls(image, args.model, f"127.0.0.1:{grpc_port}"),
        ]
        measure(server, ways, requests=args.warmup, rounds=1)
        tallies = measure(server, ways, requests=args.requests, rounds=args.rounds)
    print(f"{args.image.name} ({args.image.stat().st_size:,} bytes), model {args.model}")
    print(report(tallies))
    return 0 if all(tally.errors == 0 for tally in tallies.values()) else 1


def _server_cpu_s(server: Server) -> float:
    return sum(server.cpu_by_role().values())


def _connect(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)


def _post(connection: http.client.HTTPConnection, way: Way) -> bool:
    connection.request("POST", way.path, way.body, way.headers)
    response = connection.getresponse()
    response.read()
    return response.status == 200


if __name__ == "__main__":
    sys.exit(main())
