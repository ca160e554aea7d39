"""In-process costs: onnxruntime by batch size, and preprocessing per image.

Both report wall time and the CPU time of this process (every thread: onnxruntime's
intra-op pool included), so that costs are in core-milliseconds, comparable with the
server's CPU time per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from service.card import Preprocessing
from service.inference.sessions import OnnxModel
from service.preprocessing import open_image, prepare, prepare_bytes


@dataclass(frozen=True)
class Cost:
    """Repeated calls of one operation: per-call wall and CPU milliseconds."""

    calls: int
    wall_ms: float
    cpu_ms: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def measure(operation: Callable[[], object], *, min_seconds: float, min_calls: int = 5) -> Cost:
    """Call ``operation`` until both ``min_seconds`` and ``min_calls`` are reached."""
    operation()  # warm-up: first-call allocations, caches
    calls = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while calls < min_calls or time.perf_counter() - wall0 < min_seconds:
        operation()
        calls += 1
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return Cost(calls, 1000 * wall / calls, 1000 * cpu / calls)


@dataclass(frozen=True)
class BatchResult:
    batch_size: int
    cost: Cost  # per call of one batch

    @property
    def images_per_s(self) -> float:
        return 1000 * self.batch_size / self.cost.wall_ms

    @property
    def core_ms_per_image(self) -> float:
        return self.cost.cpu_ms / self.batch_size

    def as_dict(self) -> dict[str, float]:
        return {
            "batch_size": self.batch_size,
            "images_per_s": self.images_per_s,
            "wall_ms_per_batch": self.cost.wall_ms,
            "core_ms_per_image": self.core_ms_per_image,
        }


def inference_by_batch(
    onnx_path: Path,
    pixels: np.ndarray,
    batch_sizes: list[int],
    *,
    threads: int,
    min_seconds: float,
) -> list[BatchResult]:
    """Throughput of one onnxruntime session (as the service creates it) per batch size.

    ``pixels`` is one ``(H, W, 3)`` uint8 model input, repeated to fill each batch.
    """
    model = OnnxModel.load(onnx_path, threads=threads)  # freed, with its threads, on return
    results = []
    for size in batch_sizes:
        batch = np.repeat(pixels[np.newaxis], size, axis=0)
        cost = measure(lambda batch=batch: model.run(batch), min_seconds=min_seconds)
        results.append(BatchResult(size, cost))
    return results


@dataclass(frozen=True)
class PreprocessResult:
    image: str
    size: tuple[int, int]
    draft: Cost
    full: Cost

    def as_dict(self) -> dict[str, object]:
        return {
            "image": self.image,
            "size": list(self.size),
            "draft": self.draft.as_dict(),
            "full_decode": self.full.as_dict(),
        }


def preprocessing(
    path: Path, spec: Preprocessing, *, max_pixels: int, min_seconds: float
) -> PreprocessResult:
    """Bytes → model input for one photo, with JPEG draft decoding (the service's path,
    :func:`prepare_bytes`) and with a full-size decode."""
    data = path.read_bytes()
    size = open_image(data, max_pixels=max_pixels).size
    draft = measure(
        lambda: prepare_bytes(data, spec, max_pixels=max_pixels), min_seconds=min_seconds
    )
    full = measure(
        lambda: prepare(open_image(data, max_pixels=max_pixels), spec, draft=False),
        min_seconds=min_seconds,
    )
    return PreprocessResult(path.name, size, draft, full)
