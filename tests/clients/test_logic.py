"""The door state machine: debounce, hold-open, forced shut, fail closed."""

from __future__ import annotations

from clients.petdoor.logic import DoorLogic
from clients.petdoor.policy import Policy, Verdict

ALLOW = Verdict("allow", "allowed", "dog 0.90")
NOTHING = Verdict("none", "low_confidence", "best allowed dog 0.10 < 0.50")
DENY = Verdict("deny", "forced_shut", "cat 0.80 >= 0.30")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_logic(**overrides: object) -> tuple[DoorLogic, FakeClock]:
    settings: dict[str, object] = {
        "allow": ["dog"],
        "deny": ["cat"],
        "debounce_frames": 2,
        "hold_open_seconds": 10.0,
    }
    settings.update(overrides)
    clock = FakeClock()
    return DoorLogic(Policy.model_validate(settings), clock), clock


def test_door_opens_only_after_the_debounce_frames() -> None:
    logic, clock = make_logic(debounce_frames=3)

    first = logic.observe(ALLOW)
    clock.advance(1)
    second = logic.observe(ALLOW)
    clock.advance(1)
    third = logic.observe(ALLOW)

    assert [d.state for d in (first, second, third)] == ["closed", "closed", "open"]
    assert second.reason == "debouncing: dog 0.90 (2/3 frames)"
    assert third.reason == "allowed: dog 0.90 (3/3 frames)"


def test_a_negative_frame_restarts_the_debounce() -> None:
    logic, clock = make_logic(debounce_frames=2)

    logic.observe(ALLOW)
    logic.observe(NOTHING)

    assert logic.observe(ALLOW).state == "closed"
    assert logic.observe(ALLOW).state == "open"


def test_positive_frames_far_apart_are_not_consecutive() -> None:
    logic, clock = make_logic(debounce_frames=2, debounce_max_gap_seconds=5.0)

    logic.observe(ALLOW)
    clock.advance(5.5)

    assert logic.observe(ALLOW).state == "closed"
    clock.advance(5.0)
    assert logic.observe(ALLOW).state == "open"


def test_door_holds_open_then_closes_when_the_hold_runs_out() -> None:
    logic, clock = make_logic(debounce_frames=1, hold_open_seconds=10.0)

    assert logic.observe(ALLOW).state == "open"
    clock.advance(6)
    held = logic.observe(NOTHING)
    clock.advance(3.9)
    still = logic.tick()
    clock.advance(0.1)
    expired = logic.tick()

    assert (held.state, held.code) == ("open", "hold_open")
    assert still.state == "open"
    assert (expired.state, expired.code) == ("closed", "hold_expired")


def test_each_opening_frame_extends_the_hold() -> None:
    logic, clock = make_logic(debounce_frames=1, hold_open_seconds=10.0)

    logic.observe(ALLOW)
    clock.advance(8)
    logic.observe(ALLOW)
    clock.advance(8)

    assert logic.tick().state == "open"
    clock.advance(2)
    assert logic.tick().state == "closed"


def test_zero_hold_closes_at_the_next_tick() -> None:
    logic, clock = make_logic(debounce_frames=1, hold_open_seconds=0.0)

    assert logic.observe(ALLOW).state == "open"
    assert logic.tick().state == "closed"


def test_forced_shut_closes_an_open_door_and_cancels_the_hold() -> None:
    logic, clock = make_logic(debounce_frames=1, hold_open_seconds=30.0)
    logic.observe(ALLOW)

    shut = logic.observe(DENY)
    clock.advance(1)

    assert shut.reason == "forced_shut: cat 0.80 >= 0.30"
    assert logic.tick().state == "closed"
    assert logic.observe(NOTHING).state == "closed"


def test_error_closes_an_open_door_and_resets_the_debounce() -> None:
    logic, clock = make_logic(debounce_frames=2, hold_open_seconds=30.0)
    logic.observe(ALLOW)
    logic.observe(ALLOW)
    logic.observe(ALLOW)

    failed = logic.fail("service error: connection refused")

    assert failed.reason == "error: service error: connection refused"
    assert failed.state == "closed"
    assert logic.observe(ALLOW).state == "closed"


def test_low_confidence_frames_never_open_the_door() -> None:
    logic, clock = make_logic(debounce_frames=1)

    decisions = [logic.observe(NOTHING) for _ in range(5)]

    assert {d.state for d in decisions} == {"closed"}
    assert decisions[0].code == "low_confidence"
