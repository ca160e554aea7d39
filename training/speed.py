"""onnxruntime CPU cost per image: several graphs, one thread, measured side by side."""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from service.inference.sessions import OnnxModel

BATCHES = (1, 8, 32)
INTEGER_ISA = (("avx512_vnni", "AVX512-VNNI"), ("avx_vnni", "AVX-VNNI"), ("avx2", "AVX2"))


def cpu_name() -> str:
    """The processor's model name and its best integer dot-product instructions."""
    name, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    isa = next((label for flag, label in INTEGER_ISA if flag in flags), "no AVX2")
    return f"{name}, {isa}"


def core_ms_per_image(
    graphs: Sequence[Path],
    images: np.ndarray,
    *,
    batches: Sequence[int] = BATCHES,
    repeats: int = 3,
    min_images: int = 32,
) -> list[tuple[float, int]]:
    """For each graph, its lowest CPU milliseconds per image and the batch size giving it.

    Every graph runs on one intra-op thread in this process and computes all its outputs
    (the probabilities and, where the graph has one, the familiarity distance). CPU time
    is the calling thread's (``time.thread_time``), so other processes on the machine do
    not count. The graphs take turns within each repeat, so they see the same conditions.
    """
    models = [
        OnnxModel.load(path, providers=["CPUExecutionProvider"], threads=1) for path in graphs
    ]
    pixels = images.astype(np.float32)
    best = [(float("inf"), 0)] * len(models)
    for batch in batches:
        chunk = np.ascontiguousarray(np.resize(pixels, (batch, *pixels.shape[1:])))
        calls = max(1, -(-min_images // batch))
        for model in models:
            model.run_outputs(chunk, model.output_names)  # warm-up
        for _ in range(repeats):
            for index, model in enumerate(models):
                started = time.thread_time()
                for _ in range(calls):
                    model.run_outputs(chunk, model.output_names)
                per_image = 1000 * (time.thread_time() - started) / (calls * batch)
                if per_image < best[index][0]:
                    best[index] = (per_image, batch)
    return best
