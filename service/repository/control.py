"""Which model versions the server should serve, agreed by all its worker processes.

Each worker serves its own copy of every model, so a load or unload that reaches one worker
must reach them all. A request changes the desired state in the control folder
(:mod:`service.repository.desired_state`), bumping its generation; every worker's
:class:`Controller` thread notices the new generation, loads and retires versions to match,
and reports what it serves. The request that made the change answers once every live worker
has reported that generation.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Generic

from service.errors import ModelLoadFailed, ModelsChanging, UnknownModel, without_paths
from service.repository.desired_state import (
    READY,
    UNAVAILABLE,
    ControlDir,
    Desired,
    Versions,
    VersionState,
    WorkerStatus,
    with_version,
    without_version,
)
from service.repository.registry import M, Registry

logger = logging.getLogger("argos.repository")


@dataclass(frozen=True)
class LoadFailure:
    reason: str
    generation: int
    """The generation whose reconcile tried the version."""


class Controller(Generic[M]):
    """Keeps one worker's :class:`Registry` in line with the desired state."""

    def __init__(
        self,
        control: ControlDir,
        registry: Registry[M],
        load: Callable[[str, str], M],
        close: Callable[[M], None],
        *,
        drain_timeout_s: float,
        poll_s: float = 0.1,
        pid: int | None = None,
    ) -> None:
        self.pid = pid or os.getpid()
        self.control = control
        self.registry = registry
        self._load = load
        self._close = close
        self._drain_timeout_s = drain_timeout_s
        self._poll_s = poll_s
        self._failures: dict[tuple[str, str], LoadFailure] = {}
        self._reported = 0
        self.desired = Desired(0, {})
        """The desired state this worker applied last."""
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, models: Versions) -> None:
        """Serve the desired state (``models`` if this is the first worker), then follow it."""
        self.reconcile(self.control.initialise(models))
        self._thread = threading.Thread(target=self._follow, name="argos-controller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following the desired state and close every model this worker serves."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        for name, models in self.registry.served().items():
            for model in models:
                self._close(self.registry.retire(name, model.card.version, self._drain_timeout_s))
        self.control.withdraw(self.pid)

    def is_serving_all(self) -> bool:
        """Whether every model of the desired state has a version loaded here."""
        served = self.registry.served()
        return all(name in served for name in self.desired.models)

    def wake(self) -> None:
        """Look at the desired state now rather than at the next poll."""
        self._wake.set()

    def reconcile(self, desired: Desired) -> None:
        """Load what is missing, make each name's default version the right one, retire
        what is no longer wanted; then report. Safe to repeat: a generation whose report
        failed is applied again (a no-op) and reported at the next poll."""
        served = {
            name: [m.card.version for m in models]
            for name, models in self.registry.served().items()
        }
        for name, versions in desired.models.items():
            for version in versions:
                if version not in served.get(name, []) and self._should_try(name, version, desired):
                    self._add(name, version, desired.generation)
            self._promote_default(name, versions)
        for name, versions in served.items():
            for version in versions:
                if version not in desired.models.get(name, []):
                    self._retire(name, version)
        self._failures = {
            (name, version): failure
            for (name, version), failure in self._failures.items()
            if version in desired.models.get(name, [])
        }
        self.desired = desired
        self.control.report(self.status())
        self._reported = desired.generation

    def status(self) -> WorkerStatus:
        models: dict[str, dict[str, VersionState]] = {}
        for name, served in self.registry.served().items():
            for model in served:
                models.setdefault(name, {})[model.card.version] = VersionState(READY)
        for (name, version), failure in self._failures.items():
            models.setdefault(name, {})[version] = VersionState(UNAVAILABLE, failure.reason)
        return WorkerStatus(self.pid, self.desired.generation, models)

    async def load(self, name: str, version: str, timeout_s: float) -> None:
        """Serve ``name:version`` on every worker, as the name's default version; raises
        :class:`ModelLoadFailed` (and drops the version again) when it cannot be loaded."""
        edit = partial(with_version, name=name, version=version)
        statuses = await self._apply(edit, timeout_s, requested=(name, version))
        reasons = {
            state.reason
            for status in statuses
            if (state := status.models.get(name, {}).get(version)) and state.state != READY
        }
        if reasons:
            await self._apply(partial(without_version, name=name, version=version), timeout_s)
            raise ModelLoadFailed("; ".join(sorted(reasons)))

    async def unload(self, name: str, version: str | None, timeout_s: float) -> None:
        """Stop serving one version of ``name`` (None: every version) on every worker."""
        loaded = (await asyncio.to_thread(self.control.read)).models
        if name not in loaded or (version is not None and version not in loaded[name]):
            what = name if version is None else f"{name}:{version}"
            listed = ", ".join(f"{n}:{v}" for n, vs in loaded.items() for v in vs) or "nothing"
            raise UnknownModel(f"{what} is not loaded; loaded: {listed}")
        await self._apply(partial(without_version, name=name, version=version), timeout_s)

    async def _apply(
        self,
        edit: Callable[[Versions], Versions],
        timeout_s: float,
        requested: tuple[str, str] | None = None,
    ) -> list[WorkerStatus]:
        desired = await asyncio.to_thread(self.control.change, edit, requested)
        self.wake()
        return await self.settled(desired.generation, timeout_s)

    async def settled(self, generation: int, timeout_s: float) -> list[WorkerStatus]:
        """Wait until every live worker has applied ``generation``; their reports."""
        deadline = time.monotonic() + timeout_s
        while True:
            statuses = await asyncio.to_thread(self.control.statuses)
            if all(status.generation >= generation for status in statuses):
                return statuses
            if time.monotonic() > deadline:
                behind = sorted(s.pid for s in statuses if s.generation < generation)
                raise ModelsChanging(
                    f"workers {behind} are still loading or unloading models after "
                    f"{timeout_s:.0f} s; ask GET /models or POST /v2/repository/index for progress"
                )
            await asyncio.sleep(self._poll_s / 2)

    def _should_try(self, name: str, version: str, desired: Desired) -> bool:
        """A version is tried once, and again only for a load request newer than the try."""
        failure = self._failures.get((name, version))
        return failure is None or desired.requested_at(name, version) > failure.generation

    def _promote_default(self, name: str, versions: list[str]) -> None:
        """Make the last desired version that is served the name's default."""
        served = [model.card.version for model in self.registry.served().get(name, [])]
        wanted = [version for version in versions if version in served]
        if wanted and served[-1] != wanted[-1]:
            self.registry.promote(name, wanted[-1])

    def _add(self, name: str, version: str, generation: int) -> None:
        try:
            model = self._load(name, version)
        except Exception as error:  # a broken artifact must not take the worker down
            logger.exception("could not load %s:%s", name, version)
            reason = f"{name}:{version} could not be loaded: {without_paths(str(error))}"
            self._failures = self._failures | {(name, version): LoadFailure(reason, generation)}
            return
        self._failures = {key: f for key, f in self._failures.items() if key != (name, version)}
        self.registry.add(model)

    def _retire(self, name: str, version: str) -> None:
        model = self.registry.retire(name, version, self._drain_timeout_s)
        self._close(model)
        logger.info("unloaded %s:%s", name, version)

    def _follow(self) -> None:
        """Apply each new generation; one whose apply or report failed is tried again at
        the next poll (its error logged once). The file is read again only once it has been
        replaced."""
        last_error = ""
        applied = None  # the stamp of the desired-state file last read and applied
        while not self._stop.is_set():
            self._wake.wait(self._poll_s)
            self._wake.clear()
            try:
                stamp = self.control.desired_stamp()
                if stamp is not None and stamp == applied:
                    continue  # unchanged: not read again (a stat instead of opens and a parse)
                desired = self.control.read()
                if desired.generation != self._reported:
                    self.reconcile(desired)
                applied = stamp
            except Exception as error:
                if str(error) != last_error:
                    logger.exception("could not follow the desired model state; retrying")
                last_error = str(error)
            else:
                last_error = ""
