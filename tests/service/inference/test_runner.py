"""The runner thread: real batches of a small numpy function, real asyncio callers."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from service.errors import Overloaded, QueueTimeout, ShuttingDown
from service.inference.batcher import Scheduler
from service.inference.runner import Runner


def channel_sums(batch: np.ndarray) -> np.ndarray:
    """(N, H, W, C) → (N, C); refuses a batch holding a negative value."""
    if (batch < 0).any():
        raise ValueError("negative pixels")
    return batch.sum(axis=(1, 2))


def make_runner(run_batch=channel_sums, **changes: float) -> Runner:
    options = {"max_batch_size": 8, "max_queue_delay_s": 0.0, "max_queue_size": 64, "timeout_s": 5}
    return Runner("test", run_batch, Scheduler(**(options | changes)))


def image(value: float) -> np.ndarray:
    return np.full((2, 2, 3), value, dtype=np.float32)


async def gather(runner: Runner, values: list[float]) -> list[object]:
    return await asyncio.gather(
        *(runner.infer(image(value)) for value in values), return_exceptions=True
    )


def test_concurrent_requests_get_their_own_rows() -> None:
    runner = make_runner()
    results = asyncio.run(gather(runner, [1, 2, 3, 4, 5]))
    assert [float(result[0]) for result in results] == [4, 8, 12, 16, 20]


def test_one_bad_item_never_fails_its_neighbours() -> None:
    runner = make_runner()
    results = asyncio.run(gather(runner, [1, -1, 3]))
    assert float(results[0][0]) == 4 and float(results[2][0]) == 12
    assert isinstance(results[1], ValueError)


def test_a_full_queue_is_refused_with_503() -> None:
    release = threading.Event()

    def blocked(batch: np.ndarray) -> np.ndarray:
        release.wait(5)
        return channel_sums(batch)

    runner = make_runner(blocked, max_queue_size=2, max_batch_size=1)

    async def scenario() -> list[object]:
        first = asyncio.ensure_future(runner.infer(image(1)))  # runs, blocked
        await asyncio.sleep(0.05)
        queued = [asyncio.ensure_future(runner.infer(image(1))) for _ in range(2)]
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded) as refused:
            await runner.infer(image(1))
        assert refused.value.status_code == 503 and refused.value.headers["Retry-After"]
        release.set()
        return await asyncio.gather(first, *queued)

    assert len(asyncio.run(scenario())) == 3


def test_a_request_that_waits_past_its_deadline_gets_503_not_a_late_answer() -> None:
    release = threading.Event()

    def blocked(batch: np.ndarray) -> np.ndarray:
        release.wait(5)
        return channel_sums(batch)

    runner = make_runner(blocked, max_batch_size=1, timeout_s=0.1)

    async def scenario() -> list[object]:
        first = asyncio.ensure_future(runner.infer(image(1)))
        await asyncio.sleep(0.05)
        late = asyncio.ensure_future(runner.infer(image(2)))
        await asyncio.sleep(0.2)
        release.set()
        return await asyncio.gather(first, late, return_exceptions=True)

    first, late = asyncio.run(scenario())
    assert float(first[0]) == 4
    assert isinstance(late, QueueTimeout) and "waited" in late.detail


def test_a_job_takes_turns_with_single_requests() -> None:
    log: list[str] = []

    def logged(batch: np.ndarray) -> np.ndarray:
        log.append(f"batch of {len(batch)}")
        return channel_sums(batch)

    def job() -> Iterator[None]:
        for step in range(3):
            log.append(f"step {step}")
            yield
        return "done"

    runner = make_runner(logged, max_batch_size=1)

    async def scenario() -> list[object]:
        started = asyncio.ensure_future(runner.run_job(job()))
        singles = [asyncio.ensure_future(runner.infer(image(1))) for _ in range(2)]
        return await asyncio.gather(started, *singles)

    result, *_ = asyncio.run(scenario())
    assert result == "done"
    first_step = log.index("step 0")
    assert log.index("batch of 1") < log.index("step 2"), log  # a single ran between steps
    assert first_step < log.index("step 2")


def test_abort_answers_queued_work_with_503_and_refuses_more() -> None:
    release = threading.Event()

    def blocked(batch: np.ndarray) -> np.ndarray:
        release.wait(5)
        return channel_sums(batch)

    runner = make_runner(blocked, max_batch_size=1)

    async def scenario() -> list[object]:
        running = asyncio.ensure_future(runner.infer(image(1)))
        await asyncio.sleep(0.05)
        queued = asyncio.ensure_future(runner.infer(image(1)))
        await asyncio.sleep(0.01)
        assert runner.abort("drain time ran out") == 1
        release.set()
        with pytest.raises(ShuttingDown):
            await runner.infer(image(1))
        return await asyncio.gather(running, queued, return_exceptions=True)

    running, queued = asyncio.run(scenario())
    assert float(running[0]) == 4 and isinstance(queued, ShuttingDown)
    assert runner.join(timeout=2)


def test_the_cost_per_image_follows_measured_batches() -> None:
    runner = make_runner()
    try:
        runner.observe_batch(4, 0.4)
        assert runner.seconds_per_item == pytest.approx(0.1)
        runner.observe_batch(1, 0.6)  # one slow batch moves the estimate, a fifth of the way
        assert runner.seconds_per_item == pytest.approx(0.2)
        assert runner.expected_seconds(10) == pytest.approx(2.0)
        asyncio.run(gather(runner, [1.0, 2.0]))  # real batches are measured too
        assert 0 < runner.seconds_per_item < 0.2
    finally:
        runner.close()
        runner.join(5)


def recording_sizes(sizes: list[int]):
    def run(batch: np.ndarray) -> np.ndarray:
        sizes.append(len(batch))
        return channel_sums(batch)

    return run


def test_a_lone_request_never_waits_for_company_that_is_not_coming() -> None:
    sizes: list[int] = []
    runner = make_runner(recording_sizes(sizes), max_queue_delay_s=2.0)

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with runner.on_the_way(1) as announced:
            await runner.infer(image(1), announced)
        return loop.time() - started

    assert asyncio.run(scenario()) < 1.0  # the 2 s delay would have held it
    assert sizes == [1]


def test_a_queued_request_waits_for_the_images_on_their_way() -> None:
    sizes: list[int] = []
    runner = make_runner(recording_sizes(sizes), max_queue_delay_s=2.0)

    async def scenario() -> list[object]:
        with runner.on_the_way(3) as announced:
            first = asyncio.ensure_future(runner.infer(image(1), announced))
            await asyncio.sleep(0.1)  # the other two are still being preprocessed
            rest = [runner.infer(image(v), announced) for v in (2, 3)]
            return await asyncio.gather(first, *rest)

    results = asyncio.run(scenario())
    assert [float(result[0]) for result in results] == [4, 8, 12]
    assert sizes == [3]


def test_images_whose_preprocessing_failed_are_no_longer_waited_for() -> None:
    sizes: list[int] = []
    runner = make_runner(recording_sizes(sizes), max_queue_delay_s=2.0)

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        waiting = asyncio.ensure_future(runner.infer(image(1)))
        with pytest.raises(ValueError), runner.on_the_way(2):
            await asyncio.sleep(0.05)
            raise ValueError("a corrupt upload")
        started = loop.time()
        await waiting
        return loop.time() - started

    assert asyncio.run(scenario()) < 1.0
    assert sizes == [1]


def test_run_here_runs_on_the_caller_and_the_runner_waits_for_it() -> None:
    order: list[str] = []
    release = threading.Event()

    def recorded(batch: np.ndarray) -> np.ndarray:
        order.append(threading.current_thread().name)
        if threading.current_thread().name == "caller":
            release.wait(5)
        return channel_sums(batch)

    runner = make_runner(recorded)

    async def scenario() -> list[object]:
        assert runner.idle
        here = threading.Thread(target=lambda: runner.run_here(image(1)), name="caller")
        here.start()
        await asyncio.sleep(0.05)
        assert not runner.idle
        queued = asyncio.ensure_future(runner.infer(image(2)))
        await asyncio.sleep(0.1)
        assert order == ["caller"]  # the runner's one place is held
        release.set()
        here.join(5)
        return [await queued]

    [result] = asyncio.run(scenario())
    assert float(result[0]) == 8
    assert order == ["caller", "runner-test-0"]
    deadline = time.monotonic() + 2  # the runner answers, then ends its turn
    while not runner.idle and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runner.idle
