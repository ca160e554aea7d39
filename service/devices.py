"""The accelerators this machine has: the bottom of the layers, read by settings and sessions."""

from __future__ import annotations

from functools import cache
from pathlib import Path

GPU_DRIVERS = (Path("/proc/driver/nvidia/version"), Path("/dev/dxg"))
"""The NVIDIA kernel driver (in containers too) or WSL 2's GPU device: without either,
NVML finds no GPU."""


@cache
def gpu_count() -> int:
    """Number of NVIDIA GPUs the driver reports; 0 when there is no driver (known without
    loading NVML when the kernel driver is absent: each process asks at start)."""
    if not any(path.exists() for path in GPU_DRIVERS):
        return 0
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return 0
