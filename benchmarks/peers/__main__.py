"""Argos beside KServe's and LitServe's Python model servers, serving the same ``model.onnx``
with the same preprocessing (Argos's own), the same layout (two workers, one onnxruntime
thread each, batches of up to 8 after a wait of up to 2 ms where the server batches) and
the same closed-loop load. All the servers start at once and are loaded one at a time, each
concurrency taking turns across them, for ``--rounds`` rounds, so that a drift of the
machine touches them alike (the summary gives each figure's median over the rounds):

    python -m benchmarks.peers [--duration 15] [--warmup 3] [--servers argos,kserve] [--rounds 3]

The peers run under ``--peer-python`` (default ``.venv-peers/bin/python``, made with
``python3.11 -m venv .venv-peers && .venv-peers/bin/pip install -e '.[peers]'``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import statistics
from collections.abc import Callable, Sequence
from operator import attrgetter, methodcaller
from pathlib import Path

import httpx

from benchmarks.peers.images import default_image
from benchmarks.peers.loadgen import Call, Level, closed_loop
from benchmarks.peers.proc import tree_cpu_seconds
from benchmarks.peers.servers import (
    NAMES,
    Layout,
    Model,
    Running,
    Server,
    Top,
    check_peer_python,
    servers,
)
from benchmarks.report import table
from harness.local_server import REPO
from service.settings import DEFAULT_MODEL
from training import store


def names(text: str) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = set(chosen) - set(NAMES)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown servers {sorted(unknown)}; have {NAMES}")
    return chosen


def counts(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.peers", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--servers", type=names, default=list(NAMES), help=f"comma-separated, of {NAMES}"
    )
    parser.add_argument(
        "--concurrency", type=counts, default=[1, 8, 64], help="clients per level, e.g. 1,8,64"
    )
    parser.add_argument("--duration", type=float, default=15.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before each window")
    parser.add_argument("--image", type=Path, help="default: the shared JPEG nearest 1280x720")
    parser.add_argument("--model", default=f"{DEFAULT_MODEL}:latest", help="BentoML store tag")
    parser.add_argument(
        "--peer-python",
        type=Path,
        default=REPO / ".venv-peers/bin/python",
        help="the interpreter of the environment with the peers extra",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="times each server is measured, in turns"
    )
    parser.add_argument("--workers", type=int, default=Layout.workers, help="per server")
    parser.add_argument(
        "--batch-wait-ms",
        type=float,
        default=Layout.batch_wait_ms,
        help="longest a request waits for company, where the server batches",
    )
    return parser.parse_args(argv)


def first_answer(running: Running, call: Call, server: Server) -> Top:
    """Check that ``server`` answers one request, and what its top label is."""
    reply = httpx.post(running.url + call.path, content=call.body, headers=call.headers, timeout=60)
    reply.raise_for_status()
    return server.top(reply.json())


def measure(
    name: str, running: Running, call: Call, clients: int, args: argparse.Namespace
) -> Level:
    """One concurrency on one server: warm up, then measure a window."""
    level = asyncio.run(
        closed_loop(
            running.url,
            call,
            clients,
            warmup_s=args.warmup,
            duration_s=args.duration,
            server_cpu=lambda: tree_cpu_seconds(running.pid),
        )
    )
    print(f"  {name} c={clients}: {level.rps:.1f} req/s", flush=True)
    return level


Rounds = list[list[Level]]
"""One server's levels, per round."""


def detail_table(results: dict[str, Rounds], cores: int) -> str:
    rows = [
        [
            name,
            number,
            level.clients,
            level.rps,
            level.errors,
            level.percentile_ms(50),
            level.percentile_ms(99),
            level.server_core_ms,
            f"{100 * level.other_share(cores):.0f}%",
            _statuses(level),
        ]
        for name, rounds in results.items()
        for number, levels in enumerate(rounds, start=1)
        for level in levels
    ]
    header = ["server", "round", "clients", "req/s", "errors", "p50 ms", "p99 ms"]
    header += ["server core-ms/req", "other", "replies"]
    return table(header, rows)


def summary_table(results: dict[str, Rounds]) -> str:
    """The comparison in one Markdown row per server, each figure the median over the
    rounds: the first concurrency's throughput, p50 and CPU per request; the middle ones'
    throughput and CPU; the last one's throughput of 200s, errors and p99."""
    first, *middle, last = next(iter(results.values()))[0]
    header = [f"{_clients(first)}: req/s, p50 ms, server core-ms/req"]
    header += [f"{_clients(level)}: req/s, core-ms/req" for level in middle]
    header += [f"{_clients(last)}: req/s of 200s, errors, p99 ms"]
    lines = ["| server | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    for name, rounds in results.items():
        per_level = list(zip(*rounds, strict=True))  # each level's measurements, per round
        first, *middle, last = per_level
        cells = [_medians(first, _rps, _p50, _core_ms)]
        cells += [_medians(level, _rps, _core_ms) for level in middle]
        cells += [_medians(last, _rps, _errors, _p99)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


_rps = attrgetter("rps")
_core_ms = attrgetter("server_core_ms")
_errors = attrgetter("errors")
_p50 = methodcaller("percentile_ms", 50)
_p99 = methodcaller("percentile_ms", 99)


def _medians(rounds: Sequence[Level], *figures: Callable[[Level], float]) -> str:
    """Each figure's median over the rounds of one level."""
    return _figures(*(statistics.median(figure(level) for level in rounds) for figure in figures))


def _clients(level: Level) -> str:
    return f"{level.clients} client" + ("s" if level.clients > 1 else "")


def _figures(*values: float) -> str:
    return ", ".join("-" if not math.isfinite(v) else f"{v:.1f}" for v in values)


def _statuses(level: Level) -> str:
    return " ".join(f"{status or 'none'}:{n}" for status, n in sorted(level.statuses.items()))


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if len(args.concurrency) < 2:
        raise SystemExit("--concurrency needs at least two levels, e.g. 1,64")
    check_peer_python(args.peer_python, args.servers)
    image_path = args.image or default_image()
    image = image_path.read_bytes()
    model = Model(args.model, store.load_card(args.model).name, store.artifact_path(args.model))
    layout = Layout(workers=args.workers, batch_wait_ms=args.batch_wait_ms)
    cores = os.cpu_count() or 1
    print(f"{model.tag} ({model.artifact}), {image_path.name} ({len(image):,} bytes), {layout}")
    print(f"load average {os.getloadavg()[0]:.1f} on {cores} cores at the start")
    chosen = {name: servers(args.peer_python)[name] for name in args.servers}
    calls = {name: server.call(image, model) for name, server in chosen.items()}
    results: dict[str, Rounds] = {name: [[] for _ in range(args.rounds)] for name in chosen}
    with contextlib.ExitStack() as stack:
        running = {
            name: stack.enter_context(server.serve(model, layout))
            for name, server in chosen.items()
        }
        tops = {name: first_answer(running[name], calls[name], chosen[name]) for name in chosen}
        for number in range(args.rounds):
            for clients in args.concurrency:
                for name in chosen:
                    level = measure(name, running[name], calls[name], clients, args)
                    results[name][number].append(level)
    print()
    print(detail_table(results, cores))
    print("req/s, p50, p99 and core-ms/req count 200 replies only; errors: all other replies;")
    print("other: CPU of the rest of the machine, share of all cores (above a few %: disturbed)")
    print(", ".join(f"{name} top-1 {top.label} {top.score:.3f}" for name, top in tops.items()))
    if len({top.label for top in tops.values()}) > 1:
        print("WARNING: the servers disagree on the top label")
    print()
    print(summary_table(results))


if __name__ == "__main__":
    main()
