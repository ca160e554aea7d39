"""A worker dies with its server even when its main thread never handles the SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil

from harness.local_server import REPO

WORKER = textwrap.dedent(
    """
    import signal, time
    from service import supervision

    supervision.EXIT_MARGIN_S = 0
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a main thread that never handles it
    supervision.die_with_server(drain_s=0.5)
    print("serving", flush=True)
    while True:
        time.sleep(1)
    """
)
SERVER = textwrap.dedent(
    f"""
    import os, subprocess, sys
    worker = subprocess.Popen(
        [sys.executable, "-c", {WORKER!r}],
        env=os.environ | {{"ARGOS_SERVER_PID": str(os.getpid())}},
    )
    print(worker.pid, flush=True)
    worker.wait()
    """
)


def ended(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_worker_that_ignores_sigterm_is_killed_after_its_drain() -> None:
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    worker = int(server.stdout.readline())
    try:
        assert server.stdout.readline().strip() == "serving"
        server.kill()
        server.wait()
        killed = time.monotonic()
        while not ended(worker) and time.monotonic() - killed < 10:
            time.sleep(0.05)
        assert ended(worker), "the worker outlived its server by 10 s"
        assert time.monotonic() - killed >= 0.5  # its drain came first
    finally:
        if not ended(worker):
            os.kill(worker, signal.SIGKILL)
