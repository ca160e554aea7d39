"""Frame sources: a watched folder, a single file, an HTTP snapshot URL."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

from clients.bounded import bounded_request
from service.formats import is_image_path

MAX_FRAME_BYTES = 20 * 1024 * 1024
"""Largest snapshot read from a camera: the Argos server's default upload cap."""


@dataclass(frozen=True)
class Frame:
    """One camera frame: its encoded bytes, or why they could not be read."""

    name: str
    data: bytes | None = None
    error: str | None = None


class FrameSource(Protocol):
    """Anything that can be asked for the frames that arrived since the last call."""

    def poll(self) -> list[Frame]:
        """New frames, oldest first; empty when nothing new arrived."""
        ...


def _read(path: Path) -> Frame:
    try:
        return Frame(str(path), data=path.read_bytes())
    except OSError as exc:
        return Frame(str(path), error=f"cannot read {path}: {exc.strerror or exc}")


class FolderSource:
    """Image files appearing in a folder, each returned once, in modification-time order.

    Hidden files and non-image suffixes are ignored, so writers can create
    `.name.tmp` and rename it into place. Files younger than `settle_seconds` are
    left for a later poll, in case they are still being written. With
    `skip_existing`, files already present at the first poll are never returned.
    """

    def __init__(
        self,
        folder: Path,
        settle_seconds: float = 0.5,
        skip_existing: bool = False,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.folder = folder
        self._settle = settle_seconds
        self._wall_clock = wall_clock
        self._seen: set[str] = set()
        self._primed = not skip_existing

    def poll(self) -> list[Frame]:
        listing = self._listing()
        if not self._primed:
            self._seen = set(listing)
            self._primed = True
            return []
        # Forget files that are gone so the seen set does not grow forever.
        self._seen &= set(listing)
        cutoff = self._wall_clock() - self._settle
        fresh = sorted(
            (mtime, name)
            for name, mtime in listing.items()
            if name not in self._seen and mtime <= cutoff
        )
        self._seen.update(name for _, name in fresh)
        return [_read(self.folder / name) for _, name in fresh]

    def _listing(self) -> dict[str, float]:
        found: dict[str, float] = {}
        try:
            entries = list(os.scandir(self.folder))
        except OSError:
            return found
        for entry in entries:
            if entry.name.startswith(".") or not is_image_path(entry.name):
                continue
            try:
                if entry.is_file():
                    found[entry.name] = entry.stat().st_mtime
            except OSError:
                continue
        return found


class FileSource:
    """A single image file, returned again whenever its modification time or size changes.

    A missing file is reported once, as an error frame, until it reappears.
    """

    _MISSING = (-1, -1)

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last: tuple[int, int] | None = None

    def poll(self) -> list[Frame]:
        try:
            stat = self.path.stat()
        except OSError as exc:
            if self._last == self._MISSING:
                return []
            self._last = self._MISSING
            return [Frame(str(self.path), error=f"cannot read {self.path}: {exc.strerror or exc}")]
        signature = (stat.st_mtime_ns, stat.st_size)
        if signature == self._last:
            return []
        self._last = signature
        return [_read(self.path)]


class SnapshotSource:
    """A camera's HTTP snapshot URL: every poll fetches one fresh frame.

    Each fetch has a total deadline of ``timeout`` seconds and reads at most ``max_bytes``.
    """

    def __init__(self, url: str, timeout: float = 5.0, max_bytes: int = MAX_FRAME_BYTES) -> None:
        self.url = url
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._http = httpx.Client(timeout=timeout, follow_redirects=True)

    def poll(self) -> list[Frame]:
        try:
            response = bounded_request(
                self._http, "GET", self.url, deadline_s=self._timeout, max_bytes=self._max_bytes
            )
        except httpx.HTTPError as exc:
            return [Frame(self.url, error=f"snapshot fetch failed: {type(exc).__name__}: {exc}")]
        if not response.is_success:
            return [Frame(self.url, error=f"snapshot fetch failed: HTTP {response.status_code}")]
        if not response.content:
            return [Frame(self.url, error="snapshot fetch returned an empty body")]
        return [Frame(self.url, data=response.content)]
