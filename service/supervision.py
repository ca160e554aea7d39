"""Workers die with their server: none serves on once the ``bentoml serve`` process is gone.

The server process names itself in the environment before it starts the workers
(:func:`record_server`); each worker asks the kernel for SIGTERM when its parent ends
(``PR_SET_PDEATHSIG``), then checks that its parent is still that server, which closes the
race of a server that died before the request was made (:func:`die_with_server`). SIGTERM
makes the worker drain and exit as on any stop.

``PR_SET_PDEATHSIG`` fires when the *thread* that started the worker ends: BentoML's circus
arbiter starts workers from the main thread of ``bentoml serve``, which lives as long as
the server.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

SERVER_PID_ENV = "ARGOS_SERVER_PID"
"""Set by the ``bentoml serve`` process for its workers: its process id."""

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class ServerGone(RuntimeError):
    """The server that started this worker ended before the worker could start."""


def record_server() -> None:
    """In the ``bentoml serve`` process, before it starts the workers: name it to them."""
    os.environ[SERVER_PID_ENV] = str(os.getpid())


def die_with_server() -> int:
    """Have this worker receive SIGTERM when its server process ends; the server's pid.
    Raises :class:`ServerGone` when it has ended already."""
    server = int(os.environ.get(SERVER_PID_ENV) or os.getppid())
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"prctl(PR_SET_PDEATHSIG): {os.strerror(error)}")
    if os.getppid() != server:
        raise ServerGone(f"the server process {server} that started this worker has ended")
    return server
