"""A 20-second Locust smoke against a real server, gated on loadtests/slo.yaml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration


def test_smoke_meets_the_slos(argos_url: str, images: Path, tmp_path: Path) -> None:
    out = tmp_path / "load"
    command = [
        sys.executable, "-m", "loadtests",
        "--url", argos_url,
        "--users", "8",
        "--spawn-rate", "4",
        "--duration", "20s",
        "--slo", str(REPO / "loadtests" / "slo.yaml"),
        "--out", str(out),
        "--images", str(images),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "objectives met" in result.stdout
    for name in ("locust_stats.csv", "locust_failures.csv", "report.html"):
        assert (out / name).stat().st_size > 0, name
