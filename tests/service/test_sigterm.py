"""SIGTERM's drain runs off the thread the signal interrupts."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from service.service import _before_sigterm


@pytest.fixture()
def harmless_sigterm() -> Iterator[None]:
    """SIGTERM does nothing but what the test installs; restored afterwards."""
    before = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    yield
    signal.signal(signal.SIGTERM, before)


def test_the_drain_runs_even_when_the_signal_interrupts_a_holder_of_its_lock(
    harmless_sigterm: None,
) -> None:
    lock = threading.Lock()  # as prometheus_client's, held by the main thread when it writes
    drained = threading.Event()

    def drain() -> None:
        if lock.acquire(timeout=2):  # in the interrupted thread itself, this waits in vain
            lock.release()
            drained.set()

    _before_sigterm(drain)
    with lock:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # the handler runs here, while the lock is held
    assert drained.wait(5)
