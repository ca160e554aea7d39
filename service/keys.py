"""API keys: who may call what.

Two scopes guard the API: ``infer`` (classification, detection, model metadata) and
``admin`` (the model repository: loading, unloading, listing the store). Each scope's keys
come from an environment variable (fixed for the life of the process) and from a file of
one key per line (a Kubernetes Secret mounted as files); the file is read again when it
changes, so keys rotate without a restart. Only SHA-256 digests of keys are kept, and a
presented key is compared with every digest in constant time.

A scope whose keys are configured nowhere is *open* (``infer``: anyone may classify) or
*off* (``admin``: model control is refused). A scope with a key file configured is never
open, even while the file is missing or empty: then no key works.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import ip_address
from pathlib import Path

logger = logging.getLogger("argos.keys")

RELOAD_INTERVAL_S = 1.0
"""How often a key file is read again, at most."""


class Scope(StrEnum):
    PUBLIC = "public"
    """Health, the page, the API docs: no key needed, ever."""
    INFER = "infer"
    ADMIN = "admin"


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


@dataclass
class ScopeKeys:
    """The keys of one scope: fixed ones from the environment and a key file."""

    scope: Scope
    fixed: frozenset[bytes]
    path: Path | None
    clock: Callable[[], float] = time.monotonic
    _from_file: frozenset[bytes] = field(default=frozenset(), init=False)
    _problem: str | None = field(default=None, init=False)
    _checked: float = field(default=float("-inf"), init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    @property
    def configured(self) -> bool:
        return bool(self.fixed) or self.path is not None

    def digests(self) -> frozenset[bytes]:
        """Every valid key's digest, the key file read again if it changed."""
        if self.path is not None:
            self._refresh(self.path)
        return self.fixed | self._from_file

    def _refresh(self, path: Path) -> None:
        """Read the key file again, at most once per :data:`RELOAD_INTERVAL_S` (a small
        file: reading it is cheaper and surer than asking whether it changed)."""
        now = self.clock()
        with self._lock:
            if now - self._checked < RELOAD_INTERVAL_S:
                return
            self._checked = now
            keys, problem = _read_keys(path)
            if problem != self._problem:
                if problem:
                    logger.warning("no %s key works: the key file %s", self.scope, problem)
                else:
                    logger.info("%s keys read from their key file", self.scope)
                self._problem = problem
            self._from_file = frozenset(map(digest, keys))


class KeyRing:
    """The keys of every scope."""

    def __init__(self, scopes: Iterable[ScopeKeys]) -> None:
        self._scopes = {keys.scope: keys for keys in scopes}

    @classmethod
    def from_settings(
        cls,
        infer_keys: Iterable[str],
        infer_keys_file: Path | None,
        admin_keys: Iterable[str],
        admin_keys_file: Path | None,
    ) -> KeyRing:
        return cls(
            [
                ScopeKeys(Scope.INFER, frozenset(map(digest, infer_keys)), infer_keys_file),
                ScopeKeys(Scope.ADMIN, frozenset(map(digest, admin_keys)), admin_keys_file),
            ]
        )

    def configured(self, scope: Scope) -> bool:
        """Whether the scope has keys (or a key file) configured at all."""
        keys = self._scopes.get(scope)
        return keys is not None and keys.configured

    def scopes_of(self, key: str) -> set[Scope]:
        """The scopes ``key`` holds (empty: an unknown key). Every digest is compared."""
        presented = digest(key)
        held = set()
        for scope, keys in self._scopes.items():
            matches = [hmac.compare_digest(presented, known) for known in keys.digests()]
            if any(matches):
                held.add(scope)
        return held


def _read_keys(path: Path) -> tuple[list[str], str | None]:
    """The keys in a file (one a line; blank lines and ``#`` comments skipped), and what is
    wrong with the file when it gives none."""
    try:
        text = path.read_text()
    except OSError as error:
        return [], f"cannot be read ({error.strerror})"
    keys = [line.strip() for line in text.splitlines()]
    keys = [key for key in keys if key and not key.startswith("#")]
    return keys, None if keys else "is empty"


def listening_beyond_loopback() -> list[str]:
    """The non-loopback addresses this process listens on (from its open sockets)."""
    exposed = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if not stat.S_ISSOCK(os.fstat(int(name)).st_mode):
                continue
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        with sock:
            try:
                if sock.family not in (socket.AF_INET, socket.AF_INET6):
                    continue
                if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                    continue
                host = sock.getsockname()[0]
            except OSError:
                continue
        if not ip_address(host.split("%")[0]).is_loopback:
            exposed.append(host)
    return exposed
