"""Append-only JSON-lines audit log of door decisions."""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class AuditLog:
    """Appends one JSON object per line.

    Each line goes out in a single `write` on a file opened with O_APPEND, then
    is fsynced, so concurrent writers never interleave and a crash loses at most
    the line being written.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        """Append `record` with a `time` field (UTC, ISO 8601) put first."""
        stamped = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), **record}
        text = json.dumps(stamped, ensure_ascii=False, separators=(",", ":")) + "\n"
        # File names that are not UTF-8 reach Python as lone surrogates; written as \udcXX
        # escapes they keep the line valid JSON and the name recoverable.
        line = text.encode("utf-8", "backslashreplace")
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
