"""A real server's workers and control folder: the workers die with the ``bentoml serve``
process, and an unsafe control folder stops the server at start."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness.local_server import REPO, free_port, local_server, store_home

pytestmark = pytest.mark.integration

NOBODY = 65534


def kill_all(processes: list[psutil.Process]) -> None:
    """SIGKILL what is left of a server: circus starts each worker in a session of its
    own, so the server's process group does not hold them."""
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


def accepts_connections(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def test_no_worker_serves_once_the_server_process_is_killed(default_model: str, tmp_path: Path):
    base = tmp_path / "control"
    env = {"ARGOS_MODEL": default_model, "ARGOS_WORKERS": "2", "ARGOS_CONTROL_DIR": str(base)}
    with local_server(env, quiet=True) as server:
        parent = psutil.Process(server.pid)
        workers = parent.children()
        try:
            port = int(server.url.rsplit(":", 1)[1])
            assert len(workers) == 2
            os.kill(server.pid, signal.SIGKILL)  # the server alone, not its process group
            killed = time.monotonic()
            while accepts_connections(port) and time.monotonic() - killed < 5:
                time.sleep(0.05)
            refused_after_s = time.monotonic() - killed
            assert not accepts_connections(port), "a worker still serves 5 s after the server died"
            _, alive = psutil.wait_procs(workers, timeout=30)
            assert not alive
        finally:
            kill_all([parent, *workers])
    assert refused_after_s < 5
    assert list(base.iterdir()) == []  # the last worker removed the server's folder


@pytest.mark.skipif(os.geteuid() != 0, reason="acting as a second user needs root")
def test_a_control_folder_base_of_another_user_stops_the_server_at_start(
    default_model: str, tmp_path: Path
):
    base = tmp_path / "control"
    base.mkdir(mode=0o700)
    os.chown(base, NOBODY, NOBODY)
    home = tmp_path / "bentoml-home"
    home.mkdir()
    (home / "models").symlink_to(store_home() / "models", target_is_directory=True)
    command = [sys.executable, "-m", "bentoml", "serve", "service.service:Argos"]
    command += ["--host", "127.0.0.1", "--port", str(free_port())]
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env=os.environ
        | {"BENTOML_HOME": str(home), "ARGOS_MODEL": default_model, "ARGOS_WORKERS": "2"}
        | {"ARGOS_CONTROL_DIR": str(base)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=120)
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):
            kill_all(psutil.Process(process.pid).children(recursive=True))
        process.kill()
        process.wait()
    message = output.decode(errors="replace")
    assert process.returncode != 0, message[-2000:]
    assert f"{base} (ARGOS_CONTROL_DIR) is owned by uid {NOBODY}" in message, message[-2000:]
    assert list(base.iterdir()) == []
    assert stat.S_IMODE(base.stat().st_mode) == 0o700
