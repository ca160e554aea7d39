"""The door's state machine: debounce, hold-open, forced shut, fail closed.

Pure: no I/O, time comes only from the injected clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from clients.petdoor.policy import Policy, Verdict

DoorState = Literal["open", "closed"]


@dataclass(frozen=True)
class Decision:
    """The state the door must be in now, with a stable `code` and a human `detail`."""

    state: DoorState
    code: str
    detail: str

    @property
    def reason(self) -> str:
        return f"{self.code}: {self.detail}"


class DoorLogic:
    """Turns per-frame verdicts into door decisions.

    - The door opens after `debounce_frames` consecutive allowed frames, each at most
      `debounce_max_gap_seconds` after the previous one.
    - Once open it stays open `hold_open_seconds` after the last opening frame; frames
      without an allowed animal do not shorten that.
    - A forced-shut frame or any error closes it at once and cancels the hold.
    """

    def __init__(self, policy: Policy, clock: Callable[[], float] = time.monotonic) -> None:
        self._policy = policy
        self._clock = clock
        self._streak = 0
        self._last_allowed: float | None = None
        self._open_until: float | None = None

    def observe(self, verdict: Verdict) -> Decision:
        """Decision after one analysed frame."""
        now = self._clock()
        if verdict.kind == "deny":
            return self._shut(verdict.code, verdict.detail)
        if verdict.kind == "allow":
            return self._allowed(now, verdict)
        self._streak = 0
        return self._idle(now, verdict.code, verdict.detail)

    def fail(self, detail: str) -> Decision:
        """Decision after an error: closed, whatever came before."""
        return self._shut("error", detail)

    def tick(self) -> Decision:
        """Decision when no frame arrived: closes the door once the hold has run out."""
        if self._open_until is None:
            return Decision("closed", "idle", "no frame")
        held = self._policy.hold_open_seconds
        return self._idle(self._clock(), "hold_expired", f"held open {held:g}s")

    def _allowed(self, now: float, verdict: Verdict) -> Decision:
        policy = self._policy
        recent = (
            self._last_allowed is not None
            and now - self._last_allowed <= policy.debounce_max_gap_seconds
        )
        self._streak = self._streak + 1 if recent else 1
        self._last_allowed = now
        needed = policy.debounce_frames
        progress = f"{verdict.detail} ({min(self._streak, needed)}/{needed} frames)"
        if self._streak >= needed:
            self._open_until = now + policy.hold_open_seconds
            return Decision("open", verdict.code, progress)
        return self._idle(now, "debouncing", progress)

    def _idle(self, now: float, code: str, detail: str) -> Decision:
        if self._open_until is not None and now < self._open_until:
            left = self._open_until - now
            return Decision("open", "hold_open", f"{detail}; open {left:.1f}s more")
        self._open_until = None
        return Decision("closed", code, detail)

    def _shut(self, code: str, detail: str) -> Decision:
        self._streak = 0
        self._last_allowed = None
        self._open_until = None
        return Decision("closed", code, detail)
