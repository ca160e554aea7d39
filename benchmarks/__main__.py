"""Benchmark Argos on this machine, in one run:

(a) onnxruntime throughput by batch size (the served model, the service's thread setting);
(b) preprocessing cost per image with and without JPEG draft decoding;
(c) end-to-end throughput and latency of a real server at several concurrencies, and p99
    at half the saturating rate (open loop);
(d) the server's CPU time per request (all its processes, split by thread role) against
    the ideal;
(e) recovery: unloaded p50 before and right after a burst of requests;
(f) overload: the reply mix and goodput at many times the saturating concurrency, with
    clients that honour ``Retry-After``.

    python -m benchmarks --out reports/bench [--env ARGOS_API_WORKERS=2 ...]

Writes bench.json, bench.png and bench.txt (the printed tables) under --out.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import bentoml

from benchmarks import load, micro, report
from benchmarks.server import serve
from harness.local_server import shared_dir
from service.card import ONNX_FILENAME, verify_artifact
from service.preprocessing import prepare_bytes
from service.settings import Settings


def shared_images() -> Path:
    return shared_dir() / "images"


def int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, default=Path("reports/bench"))
    parser.add_argument("--image", type=Path, default=shared_images() / "cat_720p.jpg")
    parser.add_argument("--large-image", type=Path, default=shared_images() / "sleepy_cat.jpg")
    parser.add_argument("--batch-sizes", type=int_list, default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--concurrency", type=int_list, default=[1, 2, 4, 8, 16])
    parser.add_argument("--duration", type=float, default=15, help="seconds measured per level")
    parser.add_argument("--warmup", type=float, default=3, help="seconds before each level")
    parser.add_argument("--micro-seconds", type=float, default=2, help="per micro measurement")
    parser.add_argument(
        "--env",
        type=env_pair,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment of the server (ARGOS_* settings, BENTOML_CONFIG_OPTIONS); repeatable",
    )
    parser.add_argument("--no-half-rate", action="store_true", help="skip the open-loop level")
    parser.add_argument("--burst", type=int_list, default=[200, 3], metavar="CLIENTS,EACH")
    parser.add_argument("--overload-clients", type=int, default=400, help="0: skip (f)")
    return parser.parse_args(argv)


def service_settings(env: dict[str, str]) -> Settings:
    """The settings the server will read, given its extra environment."""
    prefix = "ARGOS_"
    overrides = {k.removeprefix(prefix).lower(): v for k, v in env.items() if k.startswith(prefix)}
    return Settings(**overrides)


class Log:
    """Print lines and keep them for bench.txt."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)


def describe(env: dict[str, str]) -> str:
    return " ".join(f"{key}={value}" for key, value in env.items()) or "defaults"


@dataclass
class ServiceRun:
    levels: list[load.Level]
    half_rate: load.Level | None
    unloaded_before: load.Level
    burst: dict[int, int]
    unloaded_after: load.Level
    overload: load.Level | None


def run_service(args: argparse.Namespace, env: dict[str, str], body: bytes) -> ServiceRun:
    """Closed-loop levels, an open-loop level at half the best throughput, a burst between
    two unloaded levels, then overload."""
    with serve(env) as server:
        timing = {
            "warmup_s": args.warmup,
            "duration_s": args.duration,
            "counters": server.counters,
        }
        unloaded = timing | {"warmup_s": 1.0, "duration_s": max(5.0, args.duration / 3)}
        load.closed_loop(server.url, body, 2, **timing)  # first requests: lazy imports, caches
        levels = []
        for concurrency in args.concurrency:
            levels.append(load.closed_loop(server.url, body, concurrency, **timing))
            _progress(levels[-1])
        saturation = max(levels, key=lambda level: level.rps)
        half = None
        if not args.no_half_rate:
            workers = max(16, 2 * saturation.concurrency)
            half = load.open_loop(server.url, body, saturation.rps / 2, workers=workers, **timing)
            _progress(half)
        before = load.closed_loop(server.url, body, 1, **unloaded)
        clients, each = args.burst
        burst = load.burst(server.url, body, clients=clients, requests_each=each)
        print(f"  burst of {clients}x{each}: {burst}", file=sys.stderr, flush=True)
        after = load.closed_loop(server.url, body, 1, **unloaded)
        overload = None
        if args.overload_clients:
            overload = load.closed_loop(
                server.url, body, args.overload_clients, honour_retry_after=True, **timing
            )
            _progress(overload)
    return ServiceRun(levels, half, before, burst, after, overload)


def _progress(level: load.Level) -> None:
    print(f"  {level.label}: {level.rps:.1f} req/s {level.statuses}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(args.env)
    settings = service_settings(env)
    model = bentoml.models.get(settings.model)
    spec = verify_artifact(Path(model.path)).preprocessing
    body = args.image.read_bytes()
    cores = os.cpu_count() or 1
    log = Log()

    load_before = os.getloadavg()
    log(
        f"Argos benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{cores} cores, load average {load_before[0]:.2f}"
    )
    log(f"model {model.tag}; server environment: {describe(env)}")

    threads = settings.onnxruntime_threads
    log(f"\n(a) onnxruntime, intra-op threads {threads}")
    pixels = prepare_bytes(body, spec, max_pixels=settings.max_image_pixels)
    batches = micro.inference_by_batch(
        Path(model.path) / ONNX_FILENAME,
        pixels,
        args.batch_sizes,
        threads=threads,
        min_seconds=args.micro_seconds,
    )
    log(report.inference_table(batches))

    log("\n(b) preprocessing, one thread, bytes -> model input")
    prep = [
        micro.preprocessing(
            path, spec, max_pixels=settings.max_image_pixels, min_seconds=args.micro_seconds
        )
        for path in (args.image, args.large_image)
    ]
    log(report.preprocessing_table(prep))

    run = run_service(args, env, body)
    levels, half = run.levels, run.half_rate
    summary = report.Summary(
        cores=cores,
        best_batch=min(batches, key=lambda result: result.core_ms_per_image),
        preprocess_ms=prep[0].draft.cpu_ms,
        saturation=max(levels, key=lambda level: level.rps),
        half_rate=half,
        unloaded_before=run.unloaded_before,
        burst=run.burst,
        unloaded_after=run.unloaded_after,
        overload=run.overload,
    )
    log(f"\n(c, d) service, POST /classify, {args.image.name} ({len(body):,} bytes) as the body")
    extra = (half, run.unloaded_before, run.unloaded_after, run.overload)
    log(report.service_table([*levels, *(level for level in extra if level)], summary))
    log(report.SERVICE_LEGEND)
    log(f"\n(d) server CPU per request by role at saturation ({summary.saturation.label})")
    log(report.breakdown_table(summary.saturation, summary, batches))
    log()
    log(report.summary_text(summary))
    load_after = os.getloadavg()
    log(f"load average after: {load_after[0]:.2f}")

    title = f"Argos /classify, {args.image.name}, {cores} cores; {describe(env)}"
    report.plot(levels, summary, args.out / "bench.png", title)
    (args.out / "bench.txt").write_text("\n".join(log.lines) + "\n")
    machine = {
        "cores": cores,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "load_average_before": load_before,
        "load_average_after": load_after,
    }
    report.write_json(
        args.out / "bench.json",
        {
            "created_at": datetime.now(UTC).isoformat(),
            "machine": machine,
            "model": str(model.tag),
            "server_environment": env,
            "settings": settings.model_dump(mode="json"),
            "image": {"name": args.image.name, "bytes": len(body)},
            "inference": [result.as_dict() for result in batches],
            "preprocessing": [result.as_dict() for result in prep],
            "service": [level.as_dict() for level in levels],
            "half_rate": half.as_dict() if half else None,
            "unloaded_before": run.unloaded_before.as_dict(),
            "unloaded_after": run.unloaded_after.as_dict(),
            "overload": run.overload.as_dict() if run.overload else None,
            "summary": summary.as_dict(),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
