"""Served versions, defaults, and leases that keep a retired version alive."""

from __future__ import annotations

import threading
import time

import pytest

from service.errors import UnknownModel
from service.repository.registry import Registry
from tests.service.repository.fakes import FakeModel, card


@pytest.fixture()
def registry() -> Registry[FakeModel]:
    registry: Registry[FakeModel] = Registry("imagenet")
    for name, version in [("imagenet", "1"), ("pets", "1"), ("pets", "2")]:
        registry.add(FakeModel(card(name, version)))
    return registry


def tag(model: FakeModel) -> str:
    return model.card.tag


def test_default_model_and_default_version(registry):
    with registry.lease() as model:
        assert tag(model) == "imagenet:1"
    with registry.lease("pets") as model:
        assert tag(model) == "pets:2"
    with registry.lease("pets", "1") as model:
        assert tag(model) == "pets:1"


def test_unknown_names_and_versions_say_what_is_served(registry):
    with pytest.raises(UnknownModel, match="served models: imagenet, pets"), registry.lease("dogs"):
        pass
    with pytest.raises(UnknownModel, match="loaded versions: 1, 2"), registry.lease("pets", "9"):
        pass


def test_a_version_cannot_be_added_twice(registry):
    with pytest.raises(ValueError, match="served already"):
        registry.add(FakeModel(card("pets", "2")))


def test_promote_makes_an_older_version_the_default(registry):
    registry.promote("pets", "1")
    assert tag(registry.get("pets")) == "pets:1"
    assert [tag(m) for m in registry.served()["pets"]] == ["pets:2", "pets:1"]


def test_retire_waits_for_the_last_lease_and_new_requests_no_longer_find_it(registry):
    leased, released, retired = threading.Event(), threading.Event(), threading.Event()

    def request_in_flight() -> None:
        with registry.lease("pets", "2"):
            leased.set()
            released.wait(5)

    def retire() -> None:
        registry.retire("pets", "2", timeout_s=5)
        retired.set()

    in_flight = threading.Thread(target=request_in_flight)
    in_flight.start()
    leased.wait(5)
    retiring = threading.Thread(target=retire)
    retiring.start()
    time.sleep(0.1)
    assert not retired.is_set()  # the request in flight still holds it
    assert tag(registry.get("pets")) == "pets:1"  # but new requests get the other version
    with pytest.raises(UnknownModel):
        registry.get("pets", "2")
    released.set()
    assert retired.wait(5)
    in_flight.join()
    retiring.join()


def test_retire_gives_up_waiting_after_its_timeout(registry):
    with registry.lease("pets", "2"):
        started = time.monotonic()
        model = registry.retire("pets", "2", timeout_s=0.05)
        assert time.monotonic() - started < 1
    assert tag(model) == "pets:2"


def test_retiring_the_last_version_removes_the_name(registry):
    registry.retire("imagenet", "1", timeout_s=0)
    assert list(registry.served()) == ["pets"]
    with pytest.raises(UnknownModel, match="no model 'imagenet'"):
        registry.get()
