"""Door drivers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from clients.petdoor.drivers import CommandDriver, DriverError


def test_command_driver_runs_the_configured_commands(tmp_path: Path) -> None:
    opened, closed = tmp_path / "opened flag", tmp_path / "closed"
    driver = CommandDriver(["touch", str(opened)], f"touch {closed}")

    driver.open()
    assert opened.exists() and not closed.exists()
    driver.close()
    assert closed.exists()


def test_command_driver_reports_a_failing_command() -> None:
    script = "import sys; sys.stderr.write('gpio busy'); sys.exit(3)"
    driver = CommandDriver([sys.executable, "-c", script], ["true"])

    with pytest.raises(DriverError, match="exited with status 3: gpio busy"):
        driver.open()


def test_command_driver_reports_a_missing_program_and_a_timeout() -> None:
    missing = CommandDriver(["/nonexistent/gpio-tool", "on"], ["true"])
    slow = CommandDriver([sys.executable, "-c", "import time; time.sleep(5)"], ["true"], 0.2)

    with pytest.raises(DriverError, match="cannot run /nonexistent/gpio-tool"):
        missing.open()
    with pytest.raises(DriverError, match="timed out after 0.2s"):
        slow.open()
