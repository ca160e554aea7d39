"""The models one worker serves right now, and the requests holding each of them.

A request *leases* a model version for as long as it uses it; retiring a version takes it
off the table at once (new requests no longer find it) and hands it back for closing only
when its last lease ends, so requests in flight on an old version finish on it.

Thread-safe: the event loop leases, the controller thread adds and retires.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from service import metrics
from service.card import ModelCard
from service.errors import UnknownModel


class HasCard(Protocol):
    card: ModelCard


M = TypeVar("M", bound=HasCard)


@dataclass(eq=False)
class _Served(Generic[M]):
    model: M
    leases: int = 0


class Registry(Generic[M]):
    """Served versions by model name; the last version loaded of a name is its default."""

    def __init__(self, default_name: str) -> None:
        self.default_name = default_name
        self._table: dict[str, list[_Served[M]]] = {}
        self._changed = threading.Condition()

    def add(self, model: M) -> None:
        """Serve ``model``; it becomes its name's default version."""
        card = model.card
        with self._changed:
            versions = self._table.setdefault(card.name, [])
            if any(served.model.card.version == card.version for served in versions):
                raise ValueError(f"{card.tag} is served already")
            versions.append(_Served(model))
            metrics.SERVED_VERSIONS.labels(model=card.name).set(len(versions))

    def promote(self, name: str, version: str) -> None:
        """Make a served version its name's default again (a rollback to it)."""
        with self._changed:
            versions = self._table.get(name, [])
            served = self._find(name, version, versions)
            versions.remove(served)
            versions.append(served)

    def retire(self, name: str, version: str, timeout_s: float) -> M:
        """Stop routing to a version and wait (up to ``timeout_s``) for its leases to end."""
        with self._changed:
            versions = self._table.get(name, [])
            served = self._find(name, version, versions)
            versions.remove(served)
            metrics.SERVED_VERSIONS.labels(model=name).set(len(versions))
            if not versions:
                del self._table[name]
            deadline = time.monotonic() + timeout_s
            while served.leases and (left := deadline - time.monotonic()) > 0:
                self._changed.wait(left)
        return served.model

    @contextmanager
    def lease(self, name: str | None = None, version: str | None = None) -> Iterator[M]:
        """The version asked for (default: the name's default version), held until the end."""
        with self._changed:
            served = self._resolve(name or self.default_name, version)
            served.leases += 1
        try:
            yield served.model
        finally:
            with self._changed:
                served.leases -= 1
                if not served.leases:
                    self._changed.notify_all()

    def get(self, name: str | None = None, version: str | None = None) -> M:
        """The version asked for, without holding it (for metadata)."""
        with self._changed:
            return self._resolve(name or self.default_name, version).model

    def served(self) -> dict[str, list[M]]:
        """Every served model's versions, in load order (the default last)."""
        with self._changed:
            return {name: [s.model for s in versions] for name, versions in self._table.items()}

    def _resolve(self, name: str, version: str | None) -> _Served[M]:
        versions = self._table.get(name)
        if not versions:
            raise UnknownModel(
                f"no model {name!r} is served; served models: {', '.join(self._table) or 'none'}"
            )
        if version is None:
            return versions[-1]
        return self._find(name, version, versions)

    @staticmethod
    def _find(name: str, version: str, versions: list[_Served[M]]) -> _Served[M]:
        for served in versions:
            if served.model.card.version == version:
                return served
        loaded = ", ".join(s.model.card.version for s in versions) or "none"
        raise UnknownModel(
            f"model {name!r} has no version {version!r} loaded; loaded versions: {loaded}"
        )
