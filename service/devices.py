"""The accelerators this machine has: the bottom of the layers, read by settings and sessions."""

from __future__ import annotations

from functools import cache


@cache
def gpu_count() -> int:
    """Number of NVIDIA GPUs the driver reports; 0 when there is no driver."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return 0
