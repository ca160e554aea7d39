"""The desired-state file protocol: the control folder that the workers of one server share.

The folder holds ``desired.json`` (model name → versions, the default last, under a
generation number that every change bumps), ``desired.lock`` (changes are made under it)
and one ``worker-PID.json`` status per worker (the generation it applied, and what it
serves). It belongs to Argos alone: made with an unpredictable name and mode 0700, refused
when it is a symbolic link, owned by another user or open to group or others; its files are
opened without following symbolic links and replaced through temporaries created
exclusively, with random names, mode 0600.

The ``bentoml serve`` process makes the folder before it starts the workers
(:func:`share_with_workers`), which find it through the environment they inherit
(:meth:`ControlDir.for_server`); it removes the folder when it exits.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import fnmatch
import json
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

READY, UNAVAILABLE = "READY", "UNAVAILABLE"
Versions = dict[str, list[str]]
"""Model name → versions to serve, in load order (the last is the name's default)."""

FOLDER_ENV = "ARGOS_SERVER_CONTROL_FOLDER"
"""Set by the ``bentoml serve`` process for its workers: the path of their control folder."""

DESIRED, LOCK = "desired.json", "desired.lock"
_OPEN = os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeControlDir(RuntimeError):
    """A control folder (or its base folder) that someone other than this server could
    change; the server refuses to start with it."""


@dataclass(frozen=True)
class Desired:
    generation: int
    models: Versions
    requested: dict[str, int] = field(default_factory=dict)
    """``name:version`` → the generation of the last load request that asked for it: a
    worker tries a version that failed again only for a newer request."""

    def requested_at(self, name: str, version: str) -> int:
        """The generation of the last load request for ``name:version`` (0: none)."""
        return self.requested.get(_tag(name, version), 0)


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
    """The desired-state file and the workers' status files of one server.

    ``is_alive(pid)``: whether a worker that reported is still running (default: a running
    child of this worker's parent). ``server_alive()``: whether the process that made the
    folder still runs; it may start more workers in it then, and removes it itself, so a
    worker removes the folder only once the server is gone and no live worker reports in it
    (default: always alive; the folder's maker removes it).
    """

    def __init__(
        self,
        path: Path,
        is_alive: Callable[[int], bool] | None = None,
        server_alive: Callable[[], bool] | None = None,
    ) -> None:
        self.path = path
        self._is_alive = is_alive or _is_sibling
        self._server_alive = server_alive or (lambda: True)
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
        with self._folder():  # refuses a folder that is not this server's alone
            pass

    @classmethod
    def for_server(cls, server_pid: int) -> ControlDir:
        """The folder that the ``bentoml serve`` process ``server_pid`` made for its
        workers (see :func:`share_with_workers`)."""
        path = os.environ.get(FOLDER_ENV)
        if not path:
            raise RuntimeError(
                f"{FOLDER_ENV} is not set: the workers of a server find their control folder "
                "through it; start Argos with `bentoml serve service.service:Argos`"
            )
        return cls(Path(path), server_alive=lambda: os.getppid() == server_pid)

    def initialise(self, models: Versions) -> Desired:
        """The desired state, written from ``models`` by the first worker to get here."""
        with self._locked():
            try:
                return self.read()
            except FileNotFoundError:
                desired = Desired(1, models)
                self._write(DESIRED, json.dumps(asdict(desired)))
                return desired

    def change(
        self, edit: Callable[[Versions], Versions], requested: tuple[str, str] | None = None
    ) -> Desired:
        """Apply ``edit`` to the desired models under the lock, as a new generation;
        ``requested``: the ``(name, version)`` a load request asks for."""
        with self._locked():
            current = self.read()
            generation = current.generation + 1
            models = edit({name: list(versions) for name, versions in current.models.items()})
            wanted = {_tag(name, v) for name, versions in models.items() for v in versions}
            asked = {tag: g for tag, g in current.requested.items() if tag in wanted}
            if requested is not None:
                asked[_tag(*requested)] = generation
            desired = Desired(generation, models, asked)
            self._write(DESIRED, json.dumps(asdict(desired)))
            return desired

    def desired_stamp(self) -> tuple[int, int] | None:
        """What changes whenever the desired-state file is replaced (its inode and
        modification time; one ``stat``), or ``None`` when it cannot be seen. Only a hint
        to read again: :meth:`read` still goes through the checked folder."""
        try:
            info = os.stat(self.path / DESIRED, follow_symlinks=False)
        except OSError:
            return None
        return info.st_ino, info.st_mtime_ns

    def read(self) -> Desired:
        raw = json.loads(self._read(DESIRED))
        return Desired(raw["generation"], raw["models"], raw.get("requested", {}))

    def report(self, status: WorkerStatus) -> None:
        self._write(_status_name(status.pid), json.dumps(asdict(status)))

    def statuses(self) -> list[WorkerStatus]:
        """The reports of the workers of this server that are still running."""
        with self._folder() as folder:
            names = [n for n in os.listdir(folder) if fnmatch.fnmatch(n, _status_name("*"))]
        reports = []
        for name in names:
            with contextlib.suppress(OSError, ValueError, KeyError):
                status = WorkerStatus.from_json(self._read(name))
                if self._is_alive(status.pid):
                    reports.append(status)
        return reports

    def withdraw(self, pid: int) -> None:
        """Remove a stopped worker's report; remove the folder too when no worker can use
        it any more (the server is gone, and no other worker that runs reports in it)."""
        with self._locked():
            with self._folder() as folder, contextlib.suppress(FileNotFoundError):
                os.unlink(_status_name(pid), dir_fd=folder)
            if not self._server_alive() and not self.statuses():
                shutil.rmtree(self.path, ignore_errors=True)

    @contextlib.contextmanager
    def _folder(self) -> Iterator[int]:
        """A descriptor of the folder, checked to be this server's alone."""
        try:
            folder = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | _OPEN)
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafeControlDir(
                    f"the control folder {self.path} is not a folder but a symbolic link or "
                    "a file; remove it"
                ) from None
            raise
        try:
            _check_private(self.path, os.fstat(folder))
            yield folder
        finally:
            os.close(folder)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        lock = self._open(LOCK, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
        finally:
            os.close(lock)  # releases the lock

    def _open(self, name: str, flags: int) -> int:
        with self._folder() as folder:
            try:
                return os.open(name, flags | _OPEN, 0o600, dir_fd=folder)
            except OSError as error:
                if error.errno == errno.ELOOP:
                    raise UnsafeControlDir(
                        f"{self.path / name} is a symbolic link; the control folder "
                        f"{self.path} was tampered with"
                    ) from None
                raise

    def _read(self, name: str) -> str:
        with os.fdopen(self._open(name, os.O_RDONLY), encoding="utf-8") as file:
            return file.read()

    def _write(self, name: str, text: str) -> None:
        """Replace ``name`` at once: through a new temporary of a random name."""
        temporary = f".{name}.{secrets.token_hex(8)}.tmp"
        with os.fdopen(self._open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "w") as file:
            file.write(text)
        with self._folder() as folder:
            try:
                os.replace(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(temporary, dir_fd=folder)
                raise


def share_with_workers(base: Path | None = None) -> Path:
    """In the ``bentoml serve`` process, before it starts the workers: make a new control
    folder under ``base`` (default: the temporary folder), name it in the environment the
    workers inherit, and remove it when this process exits."""
    folder = make_server_folder(base)
    os.environ[FOLDER_ENV] = str(folder)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def make_server_folder(base: Path | None = None) -> Path:
    """A new control folder of an unpredictable name, mode 0700, under ``base`` (default:
    the temporary folder; made 0700 when missing). Raises :class:`UnsafeControlDir` when
    ``base`` belongs to another user, or others may replace what is in it."""
    if base is None:
        base, setting = Path(tempfile.gettempdir()), "the temporary folder"
    else:
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        setting = "ARGOS_CONTROL_DIR"
    info = base.stat()
    if info.st_uid not in (os.geteuid(), 0):
        raise UnsafeControlDir(
            f"the control base folder {base} ({setting}) is owned by uid {info.st_uid}, "
            f"not by this server's user (uid {os.geteuid()}) or root"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not info.st_mode & stat.S_ISVTX:
        raise UnsafeControlDir(
            f"the control base folder {base} ({setting}) is writable by group or others "
            f"(mode {stat.S_IMODE(info.st_mode):o}) without the sticky bit; make it 0700 "
            "or 0755"
        )
    return Path(tempfile.mkdtemp(prefix="argos-", dir=base))


def with_version(models: Versions, *, name: str, version: str) -> Versions:
    """``models`` with ``name:version`` added (or moved) last: the name's default."""
    return models | {name: [v for v in models.get(name, []) if v != version] + [version]}


def without_version(models: Versions, *, name: str, version: str | None) -> Versions:
    """``models`` without ``name:version`` (None: without any version of ``name``)."""
    kept = [v for v in models.get(name, []) if version is not None and v != version]
    others = {other: versions for other, versions in models.items() if other != name}
    return others | ({name: kept} if kept else {})


def _check_private(path: Path, info: os.stat_result) -> None:
    if info.st_uid != os.geteuid():
        raise UnsafeControlDir(
            f"the control folder {path} is owned by uid {info.st_uid}, not by this server's "
            f"user (uid {os.geteuid()}); another user made it"
        )
    if info.st_mode & 0o077:
        raise UnsafeControlDir(
            f"the control folder {path} is open to group or others (mode "
            f"{stat.S_IMODE(info.st_mode):o}); it must be 0700"
        )


def _tag(name: str, version: str) -> str:
    return f"{name}:{version}"


def _status_name(pid: int | str) -> str:
    return f"worker-{pid}.json"


def _is_sibling(pid: int) -> bool:
    """Whether ``pid`` runs and is a worker of the same server as this process."""
    if pid == os.getpid():
        return True
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return int(stat_line.rsplit(")", 1)[1].split()[1]) == os.getppid()
