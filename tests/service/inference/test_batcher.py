"""The batcher's decisions, with a fake clock."""

from __future__ import annotations

import pytest

from service.inference.batcher import Batch, QueueFull, Scheduler, Step, Wait


def scheduler(**changes: float) -> Scheduler[str]:
    options = {"max_batch_size": 4, "max_queue_delay_s": 0.0, "max_queue_size": 8, "timeout_s": 1.0}
    return Scheduler(**(options | changes))


def items(decision: object) -> list[str]:
    assert isinstance(decision, Batch), decision
    return [pending.item for pending in decision.requests]


def test_without_a_delay_whatever_is_queued_runs_at_once() -> None:
    queue = scheduler()
    queue.submit("a", now=0.0)
    assert items(queue.next(now=0.0)) == ["a"]
    assert queue.next(now=0.0) == Wait(None)


def test_a_batch_never_exceeds_the_maximum_and_keeps_arrival_order() -> None:
    queue = scheduler()
    for name in "abcdef":
        queue.submit(name, now=0.0)
    assert items(queue.next(now=0.0)) == ["a", "b", "c", "d"]
    assert items(queue.next(now=0.0)) == ["e", "f"]


def test_with_a_delay_a_request_waits_for_company_on_its_way_until_the_delay_ends() -> None:
    queue = scheduler(max_queue_delay_s=0.002)
    queue.incoming = 2
    queue.submit("a", now=10.0)
    assert queue.next(now=10.001) == Wait(10.002)
    queue.incoming -= 1
    queue.submit("b", now=10.001)
    assert queue.next(now=10.0015) == Wait(10.002)
    assert items(queue.next(now=10.002)) == ["a", "b"]


def test_a_lone_request_runs_at_once_when_no_company_is_on_its_way() -> None:
    queue = scheduler(max_queue_delay_s=1.0)
    queue.submit("a", now=10.0)
    assert items(queue.next(now=10.0)) == ["a"]


def test_the_batch_runs_as_soon_as_the_last_request_on_its_way_arrives() -> None:
    queue = scheduler(max_queue_delay_s=1.0)
    queue.incoming = 1
    queue.submit("a", now=10.0)
    assert queue.next(now=10.1) == Wait(11.0)
    queue.incoming -= 1
    queue.submit("b", now=10.2)
    assert items(queue.next(now=10.2)) == ["a", "b"]


def test_a_full_batch_runs_without_waiting_for_the_delay() -> None:
    queue = scheduler(max_queue_delay_s=1.0)
    queue.incoming = 10
    for name in "abcd":
        queue.submit(name, now=0.0)
    assert items(queue.next(now=0.0)) == ["a", "b", "c", "d"]


def test_requests_past_their_deadline_are_expired_not_run() -> None:
    queue = scheduler(timeout_s=0.5)
    queue.submit("old", now=0.0)
    queue.submit("new", now=0.4)
    assert [pending.item for pending in queue.expire(now=0.5)] == ["old"]
    assert items(queue.next(now=0.5)) == ["new"]


def test_a_full_queue_refuses_more() -> None:
    queue = scheduler(max_queue_size=2)
    queue.submit("a", now=0.0)
    queue.submit_job(iter(()), now=0.0)
    with pytest.raises(QueueFull, match="2 requests are queued"):
        queue.submit("b", now=0.0)


def test_jobs_and_batches_take_turns() -> None:
    queue = scheduler(max_batch_size=1)
    job = queue.submit_job(iter(()), now=0.0)
    for name in "ab":
        queue.submit(name, now=0.0)
    turns = []
    for _ in range(4):
        turns.append(queue.next(now=0.0))
        if isinstance(turns[-1], Step):
            queue.step_done(job, finished=False)
    assert [type(turn) for turn in turns] == [Batch, Step, Batch, Step]
    assert [items(turns[0]), items(turns[2])] == [["a"], ["b"]]
    queue.step_done(job, finished=True)
    assert queue.next(now=0.0) == Wait(None)


def test_a_job_is_stepped_by_one_runner_thread_at_a_time() -> None:
    queue = scheduler()
    first = queue.submit_job(iter(()), now=0.0)
    second = queue.submit_job(iter(()), now=0.0)
    assert queue.next(now=0.0) == Step(first)
    assert queue.next(now=0.0) == Step(second)  # first is still stepping elsewhere
    assert queue.next(now=0.0) == Wait(None)
    queue.step_done(first, finished=False)
    assert queue.next(now=0.0) == Step(first)


def test_a_started_job_is_not_expired_but_a_waiting_one_is() -> None:
    queue = scheduler(timeout_s=1.0)
    running = queue.submit_job(iter(()), now=0.0)
    waiting = queue.submit_job(iter(()), now=0.0)
    assert queue.next(now=0.0) == Step(running)
    assert queue.expire_jobs(now=2.0) == [waiting]


def test_drain_returns_everything_queued() -> None:
    queue = scheduler()
    queue.submit("a", now=0.0)
    job = queue.submit_job(iter(()), now=0.0)
    requests, jobs = queue.drain()
    assert [pending.item for pending in requests] == ["a"] and jobs == [job]
    assert len(queue) == 0
