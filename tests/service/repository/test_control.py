"""Workers agreeing on the served versions through the desired-state file."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from service.errors import ModelLoadFailed, ModelsChanging, UnknownModel
from service.repository.control import Controller
from service.repository.desired_state import (
    READY,
    UNAVAILABLE,
    ControlDir,
    Desired,
    Versions,
    WorkerStatus,
)
from service.repository.registry import Registry
from tests.service.repository.fakes import FakeModel, close, load

INITIAL = {"imagenet": ["1"], "pets": ["1"]}


def worker(
    control: ControlDir, pid: int, load: Callable[[str, str], FakeModel] = load
) -> Controller[FakeModel]:
    registry: Registry[FakeModel] = Registry("imagenet")
    return Controller(control, registry, load, close, drain_timeout_s=1, poll_s=0.01, pid=pid)


def served(controller: Controller[FakeModel]) -> dict[str, list[str]]:
    return {
        name: [model.card.version for model in models]
        for name, models in controller.registry.served().items()
    }


def settle(controller: Controller[FakeModel], generation: int) -> list[WorkerStatus]:
    return asyncio.run(controller.settled(generation, timeout_s=5))


@pytest.fixture()
def control(tmp_path: Path) -> ControlDir:
    return ControlDir(tmp_path / "control", is_alive=lambda pid: True)


@pytest.fixture()
def workers(control: ControlDir) -> Iterator[list[Controller[FakeModel]]]:
    started = [worker(control, pid) for pid in (101, 102)]
    for controller in started:
        controller.start(INITIAL)
    yield started
    for controller in started:
        controller.stop()


def test_workers_start_with_the_initial_models(workers):
    assert [served(w) for w in workers] == [INITIAL, INITIAL]
    assert sorted(s.generation for s in workers[0].control.statuses()) == [1, 1]


def test_a_later_worker_follows_the_current_state_not_its_own_list(control, workers):
    generation = control.change(lambda models: models | {"pets": ["1", "2"]}).generation
    settle(workers[0], generation)
    late = worker(control, 103)
    late.start({"imagenet": ["1"]})
    try:
        assert served(late) == {"imagenet": ["1"], "pets": ["1", "2"]}
    finally:
        late.stop()


def test_load_reaches_every_worker_and_becomes_the_default(control, workers):
    generation = control.change(lambda models: models | {"pets": ["1", "2"]}).generation
    statuses = settle(workers[0], generation)
    assert {s.pid for s in statuses} == {101, 102}
    for controller in workers:
        assert served(controller)["pets"] == ["1", "2"]
        assert controller.registry.get("pets").card.version == "2"
        assert controller.status().models["pets"]["2"].state == READY


def test_rollback_loads_the_old_version_then_unloads_the_bad_one(control, workers):
    settle(workers[0], control.change(lambda m: m | {"pets": ["1", "2"]}).generation)
    bad = [controller.registry.get("pets", "2") for controller in workers]
    settle(workers[0], control.change(lambda m: m | {"pets": ["2", "1"]}).generation)
    assert [controller.registry.get("pets").card.version for controller in workers] == ["1", "1"]
    settle(workers[0], control.change(lambda m: m | {"pets": ["1"]}).generation)
    assert [served(controller)["pets"] for controller in workers] == [["1"], ["1"]]
    assert all(model.closed for model in bad)


def test_unloading_a_model_closes_it_everywhere(control, workers):
    pets = [controller.registry.get("pets") for controller in workers]
    settle(workers[0], control.change(lambda m: {"imagenet": m["imagenet"]}).generation)
    assert [served(w) for w in workers] == [{"imagenet": ["1"]}] * 2
    assert all(model.closed for model in pets)


def test_a_version_that_fails_to_load_is_reported_with_its_reason(control, workers):
    generation = control.change(lambda m: m | {"pets": ["1", "broken"]}).generation
    for status in settle(workers[0], generation):
        state = status.models["pets"]["broken"]
        assert state.state == UNAVAILABLE
        assert "sha256" in state.reason
    assert [served(w)["pets"] for w in workers] == [["1"], ["1"]]
    assert [w.registry.get("pets").card.version for w in workers] == ["1", "1"]


def test_waiting_for_a_worker_that_lags_behind_gives_up(control, workers):
    (control.path / "worker-999.json").write_text(
        json.dumps({"pid": 999, "generation": 0, "models": {}})
    )
    with pytest.raises(ModelsChanging, match=r"\[999\]"):
        asyncio.run(workers[0].settled(1, timeout_s=0.05))


def test_once_the_server_is_gone_the_last_worker_to_stop_removes_the_folder(tmp_path):
    control = ControlDir(
        tmp_path / "control", is_alive=lambda pid: True, server_alive=lambda: False
    )
    first, second = worker(control, 201), worker(control, 202)
    first.start(INITIAL)
    second.start(INITIAL)
    models = [m for w in (first, second) for ms in w.registry.served().values() for m in ms]
    first.stop()
    assert [s.pid for s in control.statuses()] == [202]
    second.stop()
    assert all(model.closed for model in models)
    assert not control.path.exists()


def test_load_and_unload_reach_every_worker(workers):
    asyncio.run(workers[0].load("pets", "2", timeout_s=5))
    assert [w.registry.get("pets").card.version for w in workers] == ["2", "2"]
    asyncio.run(workers[1].unload("pets", None, timeout_s=5))
    assert [served(w) for w in workers] == [{"imagenet": ["1"]}] * 2


def test_a_failed_load_says_why_and_is_dropped_from_the_desired_state(control, workers):
    with pytest.raises(ModelLoadFailed, match="sha256"):
        asyncio.run(workers[0].load("pets", "broken", timeout_s=5))
    assert control.read().models == INITIAL


def test_unloading_what_is_not_loaded_names_what_is(workers):
    with pytest.raises(UnknownModel, match="pets:7 is not loaded; loaded: imagenet:1, pets:1"):
        asyncio.run(workers[0].unload("pets", "7", timeout_s=5))


class FrozenClockControlDir(ControlDir):
    """A control folder on a file system whose timestamps do not move between writes."""

    FROZEN_NS = 1_700_000_000_000_000_000

    def initialise(self, models: Versions) -> Desired:
        return self._frozen(super().initialise(models))

    def change(self, *args, **kwargs) -> Desired:
        return self._frozen(super().change(*args, **kwargs))

    def _frozen(self, desired: Desired) -> Desired:
        os.utime(self.path / "desired.json", ns=(self.FROZEN_NS, self.FROZEN_NS))
        return desired


def test_two_changes_within_one_timestamp_tick_are_both_applied(tmp_path):
    control = FrozenClockControlDir(tmp_path / "control", is_alive=lambda pid: True)
    first, second = worker(control, 301), worker(control, 302)
    first.start(INITIAL)
    second.start(INITIAL)
    try:
        settle(first, control.change(lambda m: m | {"pets": ["1", "2"]}).generation)
        settle(first, control.change(lambda m: m | {"pets": ["2"]}).generation)
        assert [served(w)["pets"] for w in (first, second)] == [["2"], ["2"]]
    finally:
        first.stop()
        second.stop()


class FlakyReportsControlDir(ControlDir):
    """A control folder whose next status writes fail (a full disk, say)."""

    failures_left = 0

    def report(self, status: WorkerStatus) -> None:
        if self.failures_left:
            self.failures_left -= 1
            raise OSError(28, "No space left on device")
        super().report(status)


def test_a_failed_status_write_is_retried_and_the_wait_for_it_succeeds(tmp_path):
    control = FlakyReportsControlDir(tmp_path / "control", is_alive=lambda pid: True)
    controller = worker(control, 401)
    controller.start(INITIAL)
    try:
        control.failures_left = 1
        generation = control.change(lambda m: m | {"pets": ["1", "2"]}).generation
        (status,) = settle(controller, generation)
        assert status.generation == generation
        assert control.failures_left == 0
        assert served(controller)["pets"] == ["1", "2"]
    finally:
        controller.stop()


def test_a_version_that_failed_is_tried_again_only_when_a_request_asks_for_it(control):
    tries: list[str] = []

    def counting_load(name: str, version: str) -> FakeModel:
        tries.append(version)
        return load(name, version)

    controller = worker(control, 501, counting_load)
    controller.start(INITIAL | {"pets": ["1", "broken"]})
    try:
        assert tries.count("broken") == 1
        settle(controller, control.change(lambda m: m | {"imagenet": ["1", "2"]}).generation)
        assert tries.count("broken") == 1  # an unrelated change does not try it again
        assert controller.status().models["pets"]["broken"].state == UNAVAILABLE
        with pytest.raises(ModelLoadFailed):
            asyncio.run(controller.load("pets", "broken", timeout_s=5))
        assert tries.count("broken") == 2  # a request for it does
    finally:
        controller.stop()


def test_load_failures_tell_clients_no_server_paths(control, workers):
    with pytest.raises(ModelLoadFailed) as failed:
        asyncio.run(workers[0].load("pets", "missing", timeout_s=5))
    assert "card.json" in failed.value.detail
    assert "/srv" not in failed.value.detail
    generation = control.change(lambda m: m | {"pets": ["1", "missing"]}).generation
    for status in settle(workers[0], generation):
        assert "/srv" not in status.models["pets"]["missing"].reason


def test_a_worker_that_stops_keeps_the_folder_while_a_sibling_is_still_starting(control):
    loading = threading.Event()
    release = threading.Event()

    def slow_load(name: str, version: str) -> FakeModel:
        loading.set()
        release.wait(5)
        return load(name, version)

    first = worker(control, 601)
    first.start(INITIAL)
    second = worker(control, 602, slow_load)
    starting = threading.Thread(target=second.start, args=(INITIAL,))
    starting.start()
    try:
        assert loading.wait(5)
        first.stop()
        assert (control.path / "desired.json").exists()
    finally:
        release.set()
        starting.join(10)
    try:
        assert [s.pid for s in control.statuses()] == [602]
        assert served(second) == INITIAL
    finally:
        second.stop()


def test_a_worker_that_stops_keeps_the_folder_while_a_live_sibling_reports_in_it(tmp_path):
    control = ControlDir(
        tmp_path / "control", is_alive=lambda pid: True, server_alive=lambda: False
    )
    first, second = worker(control, 701), worker(control, 702)
    first.start(INITIAL)
    second.start(INITIAL)
    first.stop()
    assert [s.pid for s in control.statuses()] == [702]
    asyncio.run(second.unload("pets", None, timeout_s=5))
    second.stop()
    assert not control.path.exists()


def test_waiting_reads_the_statuses_off_the_event_loop(control, workers):
    readers: list[threading.Thread] = []
    statuses = control.statuses

    def recording_statuses() -> list[WorkerStatus]:
        readers.append(threading.current_thread())
        return statuses()

    control.statuses = recording_statuses  # type: ignore[method-assign]

    async def wait() -> threading.Thread:
        await workers[0].settled(1, timeout_s=5)
        return threading.current_thread()

    loop_thread = asyncio.run(wait())
    assert readers and loop_thread not in readers


def test_the_folder_and_its_files_are_private_and_no_temporaries_stay(control, workers):
    control.change(lambda m: m | {"pets": ["1", "2"]})
    assert stat.S_IMODE(control.path.stat().st_mode) == 0o700
    names = sorted(p.name for p in control.path.iterdir())
    assert names == ["desired.json", "desired.lock", "worker-101.json", "worker-102.json"]
    for path in control.path.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
