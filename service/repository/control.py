"""Which model versions the server should serve, agreed by all its worker processes.

Each worker serves its own copy of every model, so a load or unload that reaches one worker
must reach them all. The *desired state* (model name → versions, the default last) lives in
a small JSON file that a request changes under a file lock, bumping its generation; every
worker's :class:`Controller` thread notices the new generation, loads and retires versions
to match, and reports what it serves in a status file of its own. The request that made the
change answers once every live worker has reported that generation.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Generic

from service.errors import ModelLoadFailed, ModelsChanging, UnknownModel
from service.repository.registry import M, Registry

logger = logging.getLogger("argos.repository")

READY, UNAVAILABLE = "READY", "UNAVAILABLE"
Versions = dict[str, list[str]]
"""Model name → versions to serve, in load order (the last is the name's default)."""


@dataclass(frozen=True)
class Desired:
    generation: int
    models: Versions


@dataclass
class VersionState:
    state: str
    reason: str = ""


@dataclass
class WorkerStatus:
    pid: int
    generation: int
    models: dict[str, dict[str, VersionState]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, text: str) -> WorkerStatus:
        raw = json.loads(text)
        models = {
            name: {version: VersionState(**state) for version, state in versions.items()}
            for name, versions in raw["models"].items()
        }
        return cls(raw["pid"], raw["generation"], models)


class ControlDir:
    """The desired-state file and the workers' status files of one server."""

    def __init__(self, path: Path, is_alive: Callable[[int], bool] | None = None) -> None:
        self.path = path
        self._is_alive = is_alive or _is_sibling
        path.mkdir(parents=True, exist_ok=True)
        self._desired = path / "desired.json"

    @classmethod
    def for_server(cls, base: Path | None = None) -> ControlDir:
        """The folder shared by the worker processes of this server (children of one
        ``bentoml serve`` process, told apart from an earlier server by its start time)."""
        parent = os.getppid()
        folder = f"argos-{parent}-{_start_time(parent)}"
        return cls((base or Path(tempfile.gettempdir())) / folder)

    def initialise(self, models: Versions) -> Desired:
        """The desired state, written from ``models`` by the first worker to get here."""
        with self._locked():
            if not self._desired.exists():
                self._write(Desired(1, models))
            return self.read()

    def change(self, edit: Callable[[Versions], Versions]) -> Desired:
        """Apply ``edit`` to the desired models under the lock, as a new generation."""
        with self._locked():
            current = self.read()
            desired = Desired(
                current.generation + 1, edit({k: list(v) for k, v in current.models.items()})
            )
            self._write(desired)
            return desired

    def read(self) -> Desired:
        raw = json.loads(self._desired.read_text())
        return Desired(raw["generation"], raw["models"])

    def generation_marker(self) -> int:
        """Cheap change detection: the desired file's modification time."""
        try:
            return self._desired.stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    def report(self, status: WorkerStatus) -> None:
        _write_atomically(self._status_path(status.pid), json.dumps(asdict(status)))

    def withdraw(self, pid: int) -> None:
        """Remove a stopped worker's report; the last worker to leave removes the folder."""
        with self._locked():
            with contextlib.suppress(OSError):
                self._status_path(pid).unlink()
            if not self.statuses():
                shutil.rmtree(self.path, ignore_errors=True)

    def statuses(self) -> list[WorkerStatus]:
        """The reports of the workers of this server that are still running."""
        reports = []
        for path in self.path.glob("worker-*.json"):
            with contextlib.suppress(OSError, ValueError, KeyError):
                status = WorkerStatus.from_json(path.read_text())
                if self._is_alive(status.pid):
                    reports.append(status)
        return reports

    def _status_path(self, pid: int) -> Path:
        return self.path / f"worker-{pid}.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.path / "desired.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write(self, desired: Desired) -> None:
        _write_atomically(self._desired, json.dumps(asdict(desired)))


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
        self._failures: dict[tuple[str, str], str] = {}
        self._generation = 0
        self.desired = Desired(0, {})
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def generation(self) -> int:
        return self._generation

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
        what is no longer wanted; then report."""
        if desired.generation != self._generation:
            self._failures.clear()  # a new request: try failed versions again
        served = {
            name: [m.card.version for m in models]
            for name, models in self.registry.served().items()
        }
        for name, versions in desired.models.items():
            for version in versions:
                if version not in served.get(name, []) and (name, version) not in self._failures:
                    self._add(name, version)
            self._promote_default(name, versions)
        for name, versions in served.items():
            for version in versions:
                if version not in desired.models.get(name, []):
                    self._retire(name, version)
        self._generation = desired.generation
        self.desired = desired
        self.control.report(self.status())

    def status(self) -> WorkerStatus:
        models: dict[str, dict[str, VersionState]] = {}
        for name, served in self.registry.served().items():
            for model in served:
                models.setdefault(name, {})[model.card.version] = VersionState(READY)
        for (name, version), reason in list(self._failures.items()):  # another thread adds
            models.setdefault(name, {})[version] = VersionState(UNAVAILABLE, reason)
        return WorkerStatus(self.pid, self._generation, models)

    async def load(self, name: str, version: str, timeout_s: float) -> None:
        """Serve ``name:version`` on every worker, as the name's default version; raises
        :class:`ModelLoadFailed` (and drops the version again) when it cannot be loaded."""
        statuses = await self._apply(partial(with_version, name=name, version=version), timeout_s)
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
        loaded = self.control.read().models
        if name not in loaded or (version is not None and version not in loaded[name]):
            what = name if version is None else f"{name}:{version}"
            listed = ", ".join(f"{n}:{v}" for n, vs in loaded.items() for v in vs) or "nothing"
            raise UnknownModel(f"{what} is not loaded; loaded: {listed}")
        await self._apply(partial(without_version, name=name, version=version), timeout_s)

    async def _apply(
        self, edit: Callable[[Versions], Versions], timeout_s: float
    ) -> list[WorkerStatus]:
        desired = await asyncio.to_thread(self.control.change, edit)
        self.wake()
        return await self.settled(desired.generation, timeout_s)

    async def settled(self, generation: int, timeout_s: float) -> list[WorkerStatus]:
        """Wait until every live worker has applied ``generation``; their reports."""
        deadline = time.monotonic() + timeout_s
        while True:
            statuses = self.control.statuses()
            if all(status.generation >= generation for status in statuses):
                return statuses
            if time.monotonic() > deadline:
                behind = sorted(s.pid for s in statuses if s.generation < generation)
                raise ModelsChanging(
                    f"workers {behind} are still loading or unloading models after "
                    f"{timeout_s:.0f} s; ask GET /models or POST /v2/repository/index for progress"
                )
            await asyncio.sleep(self._poll_s / 2)

    def _promote_default(self, name: str, versions: list[str]) -> None:
        """Make the last desired version that is served the name's default."""
        served = [model.card.version for model in self.registry.served().get(name, [])]
        wanted = [version for version in versions if version in served]
        if wanted and served[-1] != wanted[-1]:
            self.registry.promote(name, wanted[-1])

    def _add(self, name: str, version: str) -> None:
        try:
            model = self._load(name, version)
        except Exception as error:  # a broken artifact must not take the worker down
            logger.exception("could not load %s:%s", name, version)
            self._failures[(name, version)] = f"{name}:{version} could not be loaded: {error}"
            return
        self.registry.add(model)

    def _retire(self, name: str, version: str) -> None:
        model = self.registry.retire(name, version, self._drain_timeout_s)
        self._close(model)
        logger.info("unloaded %s:%s", name, version)

    def _follow(self) -> None:
        seen: int | None = None
        while not self._stop.is_set():
            self._wake.wait(self._poll_s)
            self._wake.clear()
            marker = self.control.generation_marker()
            if marker == seen:
                continue
            seen = marker
            try:
                self.reconcile(self.control.read())
            except Exception:
                logger.exception("could not follow the desired model state")


def with_version(models: Versions, *, name: str, version: str) -> Versions:
    """``models`` with ``name:version`` added (or moved) last: the name's default."""
    return models | {name: [v for v in models.get(name, []) if v != version] + [version]}


def without_version(models: Versions, *, name: str, version: str | None) -> Versions:
    """``models`` without ``name:version`` (None: without any version of ``name``)."""
    kept = [v for v in models.get(name, []) if version is not None and v != version]
    others = {other: versions for other, versions in models.items() if other != name}
    return others | ({name: kept} if kept else {})


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _start_time(pid: int) -> str:
    """A process's start time in clock ticks since boot (``/proc/PID/stat``, field 22)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "0"
    return stat.rsplit(")", 1)[1].split()[19]


def _is_sibling(pid: int) -> bool:
    """Whether ``pid`` runs and is a worker of the same server as this process."""
    if pid == os.getpid():
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return int(stat.rsplit(")", 1)[1].split()[1]) == os.getppid()
