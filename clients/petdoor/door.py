"""`PetDoor`: frame source -> Argos -> policy -> door driver -> audit log."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from clients.http import ArgosClient, ArgosClientError, ClassifyResult, DetectResult, ModelCard
from clients.petdoor.audit import AuditLog
from clients.petdoor.drivers import DoorDriver
from clients.petdoor.logic import Decision, DoorLogic, DoorState
from clients.petdoor.policy import Policy, PolicyError, check_model, frame_verdict
from clients.petdoor.retry import Backoff, with_retries
from clients.petdoor.sources import Frame, FrameSource

log = logging.getLogger(__name__)

Analysis = tuple[ClassifyResult, DetectResult | None]


class PetDoor:
    """Drives one door from one frame source; every decision is audited.

    Anything that goes wrong (unreadable frame, service down after retries, a bad
    reply, a driver failure) ends in a closed decision, never in an exception.
    """

    def __init__(
        self,
        source: FrameSource,
        client: ArgosClient,
        policy: Policy,
        driver: DoorDriver,
        audit: AuditLog | None = None,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        timer_seconds: float = 0.1,
    ) -> None:
        self.source = source
        self.client = client
        self.policy = policy
        self.driver = driver
        self.audit = audit
        self.logic = DoorLogic(policy, clock)
        self._backoff = backoff or Backoff()
        self._sleep = sleep
        self._timer_seconds = timer_seconds
        self._door: DoorState | None = None
        self._card: ModelCard | None = None
        # Decisions and door switches happen under this lock, network calls outside it, so
        # the hold-open timer and shutdown never wait for the network.
        self._lock = threading.RLock()
        self._stopped: Decision | None = None

    @property
    def door_state(self) -> DoorState | None:
        """What the driver last set; None before the first switch and after a failure."""
        return self._door

    def process(self, frame: Frame) -> Decision:
        """Analyse one frame, switch the door if needed, audit the decision."""
        analysis: Analysis | None = None
        failure: str | None = None
        if frame.data is None:
            failure = f"unreadable frame: {frame.error}"
        else:
            try:
                analysis = self._analyse(frame.data)
            except PolicyError as exc:
                failure = f"policy error: {exc}"
            except ArgosClientError as exc:
                failure = f"service error: {exc}"
            except Exception as exc:  # a bad frame must never stop the door loop
                log.exception("analysing %s failed", frame.name)
                failure = f"unexpected error: {type(exc).__name__}: {exc}"
        with self._lock:
            if self._stopped is not None:
                return self._stopped
            if failure is not None or analysis is None:
                decision = self.logic.fail(failure or "no analysis")
            else:
                decision = self.logic.observe(frame_verdict(self.policy, *analysis))
            return self._settle(decision, frame.name, analysis)

    def tick(self) -> Decision:
        """Close the door when its hold runs out; audited only when the door changes."""
        with self._lock:
            if self._stopped is not None:
                return self._stopped
            decision = self.logic.tick()
            if decision.state == self._door:
                return decision
            return self._settle(decision, None, None)

    def run_once(self) -> list[Decision]:
        """Process every frame the source has now."""
        try:
            frames = self.source.poll()
        except Exception as exc:
            log.exception("frame source failed")
            with self._lock:
                if self._stopped is not None:
                    return [self._stopped]
                decision = self.logic.fail(f"frame source error: {exc}")
                return [self._settle(decision, None, None)]
        return [self.process(frame) for frame in frames]

    def run(self, interval: float, stop: threading.Event) -> None:
        """Poll the source every `interval` seconds until `stop` is set.

        A timer thread closes the door when its hold runs out and, once `stop` is set,
        shuts it, both on time even while a poll is still waiting for the network.
        """
        finished = threading.Event()
        timer = threading.Thread(
            target=self._keep_time, args=(stop, finished), name="petdoor-timer", daemon=True
        )
        timer.start()
        try:
            while not stop.is_set():
                self.run_once()
                self.tick()
                stop.wait(interval)
        finally:
            finished.set()
            timer.join()

    def shutdown(self) -> Decision:
        """Leave the door closed when the client stops; later frames change nothing."""
        with self._lock:
            if self._stopped is None:
                decision = Decision("closed", "shutdown", "pet-door client stopping")
                self._stopped = self._settle(decision, None, None)
            return self._stopped

    def _keep_time(self, stop: threading.Event, finished: threading.Event) -> None:
        while not stop.wait(self._timer_seconds) and not finished.is_set():
            with self._lock:
                if self._door == "open":
                    self.tick()
        if stop.is_set():
            self.shutdown()

    def _analyse(self, data: bytes) -> Analysis:
        card = self._model_card()
        top_k = self.policy.top_k and min(self.policy.top_k, len(card.labels))
        want_groups = bool(card.label_groups)
        result = with_retries(
            lambda: self.client.classify(
                data, top_k=top_k, groups=want_groups, explain=self.policy.explain
            ),
            self._backoff,
            self._sleep,
        )
        if result.model.name != card.name:
            self._card = None  # the server switched models; re-read its card next frame
        detections = None
        if self.policy.use_detect:
            params = self.policy.detect_params
            detections = with_retries(
                lambda: self.client.detect(data, **params), self._backoff, self._sleep
            )
        return result, detections

    def _model_card(self) -> ModelCard:
        if self._card is None:
            card = with_retries(self.client.model_card, self._backoff, self._sleep)
            check_model(self.policy, card)
            self._card = card
        return self._card

    def _settle(self, decision: Decision, frame: str | None, analysis: Analysis | None) -> Decision:
        applied = self._apply(decision)
        log.info("%s -> door %s (%s)", frame or "-", applied.state, applied.reason)
        if self.audit is not None:
            try:
                self.audit.write(_record(applied, frame, analysis, self._door))
            except OSError as exc:  # a full disk must not stop the door from closing
                log.error("cannot write the audit log %s: %s", self.audit.path, exc)
        return applied

    def _apply(self, decision: Decision) -> Decision:
        if decision.state == self._door:
            return decision
        try:
            self._switch(decision.state)
        except Exception as exc:
            log.error("door driver could not %s the door: %s", _verb(decision.state), exc)
            self._door = None
            self.logic.fail("driver error")
            if decision.state == "open":
                self._close_after_failure()
            return Decision(
                "closed", "driver_error", f"could not {_verb(decision.state)} door: {exc}"
            )
        self._door = decision.state
        return decision

    def _close_after_failure(self) -> None:
        try:
            self._switch("closed")
        except Exception as exc:
            log.error("door driver could not close the door either: %s", exc)
            return
        self._door = "closed"

    def _switch(self, state: DoorState) -> None:
        if state == "open":
            self.driver.open()
        else:
            self.driver.close()


def _verb(state: DoorState) -> str:
    return "open" if state == "open" else "close"


def _record(
    decision: Decision, frame: str | None, analysis: Analysis | None, door: DoorState | None
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "frame": frame,
        "decision": decision.state,
        "code": decision.code,
        "reason": decision.reason,
        "door": door or "unknown",
    }
    if analysis is not None:
        result, detections = analysis
        record["top"] = [{"label": p.label, "score": round(p.score, 4)} for p in result.predictions]
        groups = sorted(result.groups or [], key=lambda g: g.score, reverse=True)[:3]
        record["groups"] = [{"name": g.name, "score": round(g.score, 4)} for g in groups]
        if result.unknown is not None:
            record["familiarity"], record["unknown"] = result.familiarity, result.unknown
        if result.explanation is not None:
            record["explanation"] = result.explanation.model_dump(mode="json")
        if detections is not None:
            record["detections"] = [
                {"label": d.label, "score": round(d.score, 4), "box": list(d.box)}
                for d in detections.detections
            ]
    return record
