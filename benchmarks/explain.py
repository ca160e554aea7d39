"""What ``explain=true`` costs: CPU time per request of ``/classify`` with and without it.

``python -m benchmarks.explain [--images PHOTO ...] [--rounds N] [--repeats N]`` serves the
model (``ARGOS_MODEL``) in this process, as one worker of a server is configured, and sends
the same photos through ``POST /classify`` and ``POST /classify?explain=true`` in
alternating blocks, one request at a time, so that drift hits both alike. It prints each
path's CPU milliseconds per request (this process, every thread: HTTP, preprocessing,
onnxruntime; the median over blocks) and their ratio.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi.testclient import TestClient

from benchmarks.report import table
from harness.local_server import shared_dir
from service.http.app import create_app
from service.http.worker import Worker
from service.repository.desired_state import ControlDir
from service.repository.serving import serve_models
from service.repository.store import BentoStore
from service.settings import get_settings

PHOTOS = ("cat_720p.jpg", "happy_dog.jpg", "pets.jpg", "kite_and_cold.jpg", "parrot.jpg")
PATHS = ("/classify", "/classify?explain=true")


@contextmanager
def in_process() -> Iterator[TestClient]:
    """The API over the served model, in this process."""
    settings = get_settings()
    store = BentoStore()
    name, version = store.resolve(settings.model)
    with tempfile.TemporaryDirectory() as control:
        controller = serve_models(settings, store, ControlDir(Path(control)), {name: [version]})
        try:
            yield TestClient(create_app(Worker(settings, store, controller, (name,))))
        finally:
            controller.stop()


def block_core_ms(client: TestClient, path: str, photos: list[bytes], repeats: int) -> float:
    """CPU ms of this process per request over ``repeats`` passes of ``photos``."""
    started = time.process_time()
    for _ in range(repeats):
        for data in photos:
            client.post(path, files={"image": data}).raise_for_status()
    return 1000 * (time.process_time() - started) / (repeats * len(photos))


def cpu_name() -> str:
    with open("/proc/cpuinfo") as info:
        names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
    return names[0] if names else platform.processor()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.explain", description=__doc__)
    images = shared_dir() / "images"
    parser.add_argument("--images", type=Path, nargs="+", default=[images / p for p in PHOTOS])
    parser.add_argument("--rounds", type=int, default=8, help="blocks per path")
    parser.add_argument("--repeats", type=int, default=4, help="passes over the photos per block")
    args = parser.parse_args(argv)
    photos = [path.read_bytes() for path in args.images]

    blocks: dict[str, list[float]] = {path: [] for path in PATHS}
    with in_process() as client:
        for path in PATHS:  # warm-up: first-call allocations, arenas
            block_core_ms(client, path, photos, 1)
        for round_ in range(args.rounds):
            order = list(PATHS) if round_ % 2 == 0 else list(reversed(PATHS))
            for path in order:
                blocks[path].append(block_core_ms(client, path, photos, args.repeats))

    plain, explained = (statistics.median(blocks[path]) for path in PATHS)
    print(
        f"{len(photos)} photos ({', '.join(p.name for p in args.images)}), model "
        f"{get_settings().model}, {args.rounds} blocks of {args.repeats * len(photos)} requests "
        f"per path; {cpu_name()}, {os.cpu_count()} cores"
    )
    rows = [
        (path, median, min(blocks[path]), max(blocks[path]), median / plain)
        for path, median in zip(PATHS, (plain, explained), strict=True)
    ]
    print(table(["path", "core-ms/request", "min", "max", "vs /classify"], rows))
    print(f"explain=true costs {explained / plain:.2f}x a plain classification")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
