"""Admission control with a fake clock."""

from __future__ import annotations

import pytest

from service.errors import Overloaded, ShuttingDown
from service.inference.admission import MAX_RETRY_AFTER_S, Admission


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def refuse(admission: Admission) -> Overloaded:
    with pytest.raises(Overloaded) as refused, admission.slot():
        pass
    return refused.value


def test_places_are_held_for_the_request_and_given_back() -> None:
    admission = Admission(limit=2, clock=Clock())
    with admission.slot(), admission.slot():
        assert admission.inflight == 2
        refuse(admission)
    assert admission.inflight == 0
    with admission.slot():
        pass


def test_a_place_is_given_back_when_the_request_fails() -> None:
    admission = Admission(limit=1, clock=Clock())
    with pytest.raises(ValueError), admission.slot():
        raise ValueError("decoding failed")
    assert admission.inflight == 0


def test_retry_after_grows_with_last_seconds_refusals_per_admission() -> None:
    clock = Clock()
    admission = Admission(limit=1, clock=clock)
    with admission.slot():
        assert refuse(admission).retry_after_s == 1  # nothing measured yet
        refuse(admission)
        clock.now += 1  # last second: 1 admitted, 2 refused
        assert refuse(admission).retry_after_s == 3
        clock.now += 1  # last second: 0 admitted, 1 refused
        assert refuse(admission).retry_after_s == 2
        clock.now += 5  # a quiet gap: nothing measured for the second before
        assert refuse(admission).retry_after_s == 1


def test_retry_after_is_capped() -> None:
    clock = Clock()
    admission = Admission(limit=0, clock=clock)
    for _ in range(1000):
        refuse(admission)
    clock.now += 1
    assert refuse(admission).retry_after_s == MAX_RETRY_AFTER_S


def test_a_draining_worker_admits_nothing() -> None:
    admission = Admission(limit=5, clock=Clock())
    admission.draining = True
    with pytest.raises(ShuttingDown), admission.slot():
        pass


def test_work_is_admitted_while_it_fits_the_budget() -> None:
    admission = Admission(limit=100, budget_s=1.0, clock=Clock())
    with admission.slot(4, work_s=0.6):
        with admission.slot(1, work_s=0.3):
            assert admission.work_s == pytest.approx(0.9)
            with pytest.raises(Overloaded) as refused, admission.slot(1, work_s=0.2):
                pass
            assert "900 ms of work" in refused.value.detail
            assert "beyond the 1000 ms" in refused.value.detail
        with admission.slot(1, work_s=0.2):
            pass
    assert (admission.inflight, admission.work_s) == (0, 0.0)


def test_an_idle_worker_admits_one_request_of_any_cost() -> None:
    admission = Admission(limit=100, budget_s=1.0, clock=Clock())
    with admission.slot(8, work_s=5.0):
        assert admission.inflight == 8
        with pytest.raises(Overloaded), admission.slot(1, work_s=0.001):
            pass
