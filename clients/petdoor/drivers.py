"""Door drivers: print the state, run a command, or call a smart relay."""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal, Protocol, TextIO

import httpx

from clients.bounded import bounded_request

_MAX_RELAY_REPLY_BYTES = 64 * 1024


class DriverError(RuntimeError):
    """The door could not be switched."""


class DoorDriver(Protocol):
    """Switches the physical door; raises `DriverError` when it cannot."""

    def open(self) -> None: ...

    def close(self) -> None: ...


class LogDriver:
    """Prints each state change; for dry runs and demos."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def open(self) -> None:
        self._print("open")

    def close(self) -> None:
        self._print("closed")

    def _print(self, state: str) -> None:
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        print(f"{stamp} door {state}", file=self._stream or sys.stdout, flush=True)


class CommandDriver:
    """Runs a fixed command to open and another to close (a GPIO tool, a script, ...).

    Commands are split with shell quoting rules but never run through a shell,
    and nothing from the analysed frames is ever added to them.
    """

    def __init__(
        self,
        open_command: str | Sequence[str],
        close_command: str | Sequence[str],
        timeout: float = 10.0,
    ) -> None:
        self._open = _argv(open_command, "open")
        self._close = _argv(close_command, "close")
        self._timeout = timeout

    def open(self) -> None:
        self._run(self._open)

    def close(self) -> None:
        self._run(self._close)

    def _run(self, argv: list[str]) -> None:
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=self._timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise DriverError(f"{argv[0]} timed out after {self._timeout:g}s") from exc
        except OSError as exc:
            raise DriverError(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip()[-300:]
            raise DriverError(f"{argv[0]} exited with status {done.returncode}: {tail}")


def _argv(command: str | Sequence[str], role: str) -> list[str]:
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if not argv:
        raise ValueError(f"the {role} command is empty")
    return argv


class HttpRelayDriver:
    """Calls a smart relay's URL.

    `{state}` in the URL is replaced by `open_value` or `close_value`; with POST
    the value is also sent as JSON `{"state": value}`.
    """

    def __init__(
        self,
        url: str,
        method: Literal["GET", "POST"] = "POST",
        open_value: str = "on",
        close_value: str = "off",
        timeout: float = 5.0,
    ) -> None:
        self._url = url
        self._method = method
        self._values = {"open": open_value, "close": close_value}
        self._timeout = timeout
        self._http = httpx.Client(timeout=timeout)

    def open(self) -> None:
        self._call("open")

    def close(self) -> None:
        self._call("close")

    def _call(self, action: str) -> None:
        value = self._values[action]
        url = self._url.replace("{state}", value)
        body = {"state": value} if self._method == "POST" else None
        try:
            response = bounded_request(
                self._http,
                self._method,
                url,
                deadline_s=self._timeout,
                max_bytes=_MAX_RELAY_REPLY_BYTES,
                json=body,
            )
        except httpx.HTTPError as exc:
            raise DriverError(f"relay {action} failed: {type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            raise DriverError(f"relay {action} failed: HTTP {response.status_code}")
