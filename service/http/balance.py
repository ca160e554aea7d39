"""An even spread of keep-alive connections over a server's workers.

The workers of one server accept from one listening socket, and the kernel gives a burst
of new connections to whichever worker is awake first: 64 clients that connect at once
were split 8/56 between two workers, and the crowded worker then holds more work than it
may queue and refuses requests that its sibling had room for. Keep-alive keeps that split
for as long as the clients stay.

Each worker counts its open connections in a slot of a small file shared by the server's
workers (in its control folder). A worker holding more than ``slack`` connections beyond
its least busy sibling lets one go: the reply to its current request says
``Connection: close``, the client reconnects, and the connection lands on whichever worker
accepts it first, most often one with less to do. The slack (2, or a sixteenth of all
connections) keeps an even spread from churning.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

_SLOT = struct.Struct("q")
FILE_NAME = "connections"


class ConnectionBalance:
    """One worker's view of the open connections of every worker of its server."""

    def __init__(self, folder: Path, workers: int, index: int) -> None:
        """``folder``: the server's control folder; ``index``: this worker's, 0-based."""
        if workers < 2:
            raise ValueError("a balance needs at least two workers")
        if not 0 <= index < workers:
            raise ValueError(f"worker index {index} is outside 0..{workers - 1}")
        self.index = index
        self._format = struct.Struct(f"{workers}q")
        fd = os.open(folder / FILE_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            if os.fstat(fd).st_size < self._format.size:
                os.ftruncate(fd, self._format.size)
            self._shared = mmap.mmap(fd, self._format.size)
        finally:
            os.close(fd)
        self.open = 0
        self._publish()  # a restarted worker starts from none

    def opened(self) -> None:
        """A connection was accepted."""
        self.open += 1
        self._publish()

    def closed(self) -> None:
        """A connection ended (or was let go: see :meth:`release_one`)."""
        self.open -= 1
        self._publish()

    def release_one(self) -> bool:
        """Whether to let one connection go now: this worker holds more than the slack
        beyond its least busy sibling. If so it no longer counts that connection."""
        counts = self._format.unpack(self._shared)
        fewest = min(count for i, count in enumerate(counts) if i != self.index)
        slack = max(2, sum(counts) // 16)
        if self.open - fewest <= slack:
            return False
        self.closed()
        return True

    def _publish(self) -> None:
        _SLOT.pack_into(self._shared, self.index * _SLOT.size, self.open)
