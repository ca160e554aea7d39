"""Helpers shared by the pet-door client tests."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_image(path: Path, mtime: float) -> None:
    path.write_bytes(b"\xff\xd8\xff" + path.name.encode())
    os.utime(path, (mtime, mtime))
