"""Workers agreeing on the served versions through the desired-state file."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.errors import ModelLoadFailed, ModelsChanging, UnknownModel
from service.repository.control import READY, UNAVAILABLE, ControlDir, Controller, WorkerStatus
from service.repository.registry import Registry
from tests.service.repository.fakes import FakeModel, close, load

INITIAL = {"imagenet": ["1"], "pets": ["1"]}


def worker(control: ControlDir, pid: int) -> Controller[FakeModel]:
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
    return ControlDir(tmp_path, is_alive=lambda pid: True)


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


def test_stopping_closes_every_model_and_the_last_worker_removes_the_folder(control):
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
