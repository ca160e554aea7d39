"""Detection throughput: windows per second through ``/detect`` against raw onnxruntime.

``python -m benchmarks.detect [--image PHOTO] [--repeats N]`` starts the service on the
served model, sends the photo to ``/detect`` in exact and dense mode, and runs the same
windows through onnxruntime directly, in calls of the same chunk size, in this process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from benchmarks.server import serve
from harness.local_server import shared_dir
from service.card import ONNX_FILENAME
from service.detection.params import DetectParams
from service.detection.plan import plan, window_inputs
from service.inference.sessions import OnnxModel
from service.preprocessing import load_rgb
from service.settings import get_settings
from training import store

DEFAULT_IMAGE = shared_dir() / "images" / "pets.jpg"


def raw_onnxruntime(tag: str, image: Path, repeats: int) -> tuple[int, float]:
    """Windows and median seconds to classify the default windows of ``image`` directly."""
    settings = get_settings()
    card = store.load_card(tag)
    spec = card.preprocessing
    model = OnnxModel.load(
        store.artifact_path(tag) / ONNX_FILENAME,
        providers=settings.providers,
        threads=settings.onnxruntime_threads,
    )
    with Image.open(image) as opened:
        rgb = load_rgb(opened)
    scales = plan(rgb.width, rgb.height, DetectParams(), spec, settings.detect_max_windows)
    boxes = np.concatenate([scale.boxes for scale in scales])
    pixels = window_inputs(rgb, boxes, spec)
    model.run_chunked(pixels, settings.detect_chunk_size)
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.run_chunked(pixels, settings.detect_chunk_size)
        seconds.append(time.perf_counter() - started)
    return len(pixels), statistics.median(seconds)


def through_service(url: str, image: Path, mode: str, repeats: int) -> tuple[int, float]:
    """Windows and median seconds of ``/detect`` for one photo, end to end."""
    data = image.read_bytes()
    seconds, windows = [], 0
    with httpx.Client(base_url=url, timeout=300) as client:
        for attempt in range(repeats + 1):
            started = time.perf_counter()
            reply = client.post(f"/detect?mode={mode}", files={"image": data})
            elapsed = time.perf_counter() - started
            reply.raise_for_status()
            windows = reply.json()["windows"]
            if attempt:  # the first request warms up
                seconds.append(elapsed)
    return windows, statistics.median(seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.detect", description=__doc__)
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    tag = get_settings().model
    chunk = get_settings().detect_chunk_size

    raw_windows, raw_s = raw_onnxruntime(tag, args.image, args.repeats)
    with serve() as server:
        exact_windows, exact_s = through_service(server.url, args.image, "exact", args.repeats)
        dense_windows, dense_s = through_service(server.url, args.image, "dense", args.repeats)

    raw_rate = raw_windows / raw_s
    rows = [
        ("onnxruntime, this process", raw_windows, raw_s, raw_rate),
        ("/detect mode=exact", exact_windows, exact_s, exact_windows / exact_s),
        ("/detect mode=dense", dense_windows, dense_s, dense_windows / dense_s),
    ]
    print(
        f"{args.image.name}, model {tag}, chunk {chunk}, median of {args.repeats}, "
        f"{os.cpu_count()} cores"
    )
    print(f"{'path':<28}{'windows':>9}{'ms':>10}{'windows/s':>12}{'÷ raw':>8}")
    for name, windows, seconds, rate in rows:
        print(f"{name:<28}{windows:>9}{seconds * 1000:>10.1f}{rate:>12.1f}{rate / raw_rate:>8.2f}")
    print(f"dense speed-up over exact: {exact_s / dense_s:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
