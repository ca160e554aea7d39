"""The accelerators this machine has: the bottom of the layers, read by settings and sessions."""

from __future__ import annotations

from functools import cache
from pathlib import Path

NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")
"""Present while the NVIDIA kernel driver is loaded, in containers too."""


@cache
def gpu_count() -> int:
    """Number of NVIDIA GPUs the driver reports; 0 when there is no driver (known without
    loading NVML when the kernel driver is absent: each process asks at start)."""
    if not NVIDIA_DRIVER.exists():
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
