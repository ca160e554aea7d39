"""Workers die with their server: none serves on once the ``bentoml serve`` process is gone.

The server process names itself in the environment before it starts the workers
(:func:`record_server`); each worker asks the kernel for SIGTERM when its parent ends
(``PR_SET_PDEATHSIG``), then checks that its parent is still that server, which closes the
race of a server that died before the request was made (:func:`die_with_server`). SIGTERM
makes the worker drain and exit as on any stop. Python runs that handler on the main
thread, so a worker whose main thread is stuck would never see it: a watchdog thread also
notices the server's end and, once the worker has had its drain and a margin, kills it.

``PR_SET_PDEATHSIG`` fires when the *thread* that started the worker ends: BentoML's circus
arbiter starts workers from the main thread of ``bentoml serve``, which lives as long as
the server.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

SERVER_PID_ENV = "ARGOS_SERVER_PID"
"""Set by the ``bentoml serve`` process for its workers: its process id."""

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
EXIT_MARGIN_S = 5.0
"""Time a drained worker may take to exit, beyond its drain."""


class ServerGone(RuntimeError):
    """The server that started this worker ended before the worker could start."""


def record_server() -> None:
    """In the ``bentoml serve`` process, before it starts the workers: name it to them."""
    os.environ[SERVER_PID_ENV] = str(os.getpid())


def die_with_server(drain_s: float) -> int:
    """Have this worker receive SIGTERM when its server process ends, and SIGKILL
    ``drain_s`` + :data:`EXIT_MARGIN_S` later if it still runs; the server's pid. Raises
    :class:`ServerGone` when it has ended already."""
    server = int(os.environ.get(SERVER_PID_ENV) or os.getppid())
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"prctl(PR_SET_PDEATHSIG): {os.strerror(error)}")
    if os.getppid() != server:
        raise ServerGone(f"the server process {server} that started this worker has ended")
    watchdog = threading.Thread(
        target=_kill_after_server,
        args=(server, drain_s + EXIT_MARGIN_S),
        name="argos-watchdog",
        daemon=True,
    )
    watchdog.start()
    return server


def _kill_after_server(server: int, grace_s: float, poll_s: float = 1.0) -> None:
    """Once the process ``server`` is no longer this one's parent, wait ``grace_s``, then
    SIGKILL this process (a clean exit meanwhile ends this thread with it)."""
    while os.getppid() == server:
        time.sleep(poll_s)
    time.sleep(grace_s)
    os.kill(os.getpid(), signal.SIGKILL)
