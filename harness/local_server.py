"""Run a real Argos server as a subprocess on a free loopback port, for tests and benchmarks.

Each server gets a BentoML home of its own whose ``models`` folder links to the current
model store: BentoML wipes ``$BENTOML_HOME/prometheus_multiproc_dir`` when a server
starts, so two servers sharing a home would erase each other's metrics.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 180


@dataclass(frozen=True)
class LocalServer:
    url: str
    pid: int


def shared_dir() -> Path:
    """The folder of shared photos and weights: ``$ARGOS_SHARED_DIR``, else ``../shared``."""
    return Path(os.environ.get("ARGOS_SHARED_DIR", REPO.parent / "shared"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def store_home() -> Path:
    """The BentoML home whose model store the servers read."""
    return Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml")).resolve()


@contextmanager
def local_server(
    env: dict[str, str] | None = None, *, quiet: bool = False, log: Path | None = None
) -> Iterator[LocalServer]:
    """``bentoml serve`` the Argos service, with extra environment variables (``ARGOS_*``
    settings, BentoML options), until the block ends; its output goes to ``log`` when
    given."""
    home = Path(tempfile.mkdtemp(prefix="argos-server-"))
    (home / "models").symlink_to(store_home() / "models", target_is_directory=True)
    port = free_port()
    command = [sys.executable, "-m", "bentoml", "serve", "service.service:Argos"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    quieted = subprocess.DEVNULL if quiet else None
    with log.open("ab") if log is not None else contextlib.nullcontext(quieted) as output:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=os.environ | (env or {}) | {"BENTOML_HOME": str(home)},
            stdout=output,
            stderr=output,
            start_new_session=True,
        )
    server = LocalServer(f"http://127.0.0.1:{port}", process.pid)
    try:
        _wait_ready(server.url, process)
        yield server
    finally:
        _stop(process)
        shutil.rmtree(home, ignore_errors=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, then SIGKILL it if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the Argos server exited with code {process.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the Argos server at {url} was not ready in {START_TIMEOUT_S} s")
