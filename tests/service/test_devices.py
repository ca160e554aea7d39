"""Counting the accelerators."""

from __future__ import annotations

import subprocess
import sys

import pytest

from service.devices import GPU_DRIVERS


@pytest.mark.skipif(any(path.exists() for path in GPU_DRIVERS), reason="this host has a GPU driver")
def test_a_host_without_the_nvidia_driver_counts_no_gpu_without_loading_nvml() -> None:
    """Every server and worker process counts at start: NVML stays unloaded where there
    is no driver for it to find."""
    code = "import sys; from service.devices import gpu_count; "
    code += "print(gpu_count(), 'pynvml' in sys.modules)"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert found.stdout.split() == ["0", "False"], found.stderr
