"""An in-process Argos API over tiny ONNX models: HTTP behaviour in milliseconds."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.card import ONNX_FILENAME, sha256_of
from service.errors import UnknownModel
from service.http.app import create_app
from service.http.worker import Worker
from service.repository.desired_state import ControlDir
from service.repository.serving import serve_models
from service.settings import Settings
from tests.service.tiny_model import (
    make_card,
    tiny_familiarity,
    write_tiny_classifier,
    write_tiny_dense_graphs,
)

MakeClient = Callable[..., TestClient]
ADMIN_KEY = "admin-key-of-the-tests"
"""The tests' clients send it, so model control is on; inference stays open."""
TINY_MODELS = [("colours", "1"), ("colours", "2"), ("shades", "1"), ("greys", "1")]
DENSE_MODEL = "shades"
"""A tiny model that also ships backbone and head graphs (``card.dense``)."""
FAMILIAR_MODEL = "greys"
"""The tiny model with familiarity statistics (and dense graphs): mid-grey is familiar."""


class FolderStore:
    """A model store in plain ``NAME/VERSION/`` folders; the highest version is latest."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def resolve(self, tag: str) -> tuple[str, str]:
        name, _, version = tag.partition(":")
        versions = self._versions(name)
        if version in ("", "latest") and versions:
            return name, versions[-1]
        if version not in versions:
            raise UnknownModel(f"the model store has no {tag!r}")
        return name, version

    def stored(self) -> list[tuple[str, str]]:
        names = sorted(p.name for p in self.root.iterdir())
        return [(name, version) for name in names for version in self._versions(name)]

    def artifact_path(self, name: str, version: str) -> Path:
        return self.root / name / version

    def _versions(self, name: str) -> list[str]:
        folder = self.root / name
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store-like folder ``NAME/VERSION/`` of verified artifacts of the tiny classifier
    (red/green/blue): ``colours`` in versions 1 and 2, ``shades`` with dense graphs, and
    ``greys`` with dense graphs and familiarity."""
    root = tmp_path_factory.mktemp("tiny-store")
    for name, version in TINY_MODELS:
        directory = root / name / version
        directory.mkdir(parents=True)
        familiar = name == FAMILIAR_MODEL
        write_tiny_classifier(directory / ONNX_FILENAME, familiar=familiar)
        with_dense = name in (DENSE_MODEL, FAMILIAR_MODEL)
        dense = write_tiny_dense_graphs(directory, familiar=familiar) if with_dense else None
        familiarity = tiny_familiarity() if familiar else None
        card = make_card(name=name, version=version, dense=dense, familiarity=familiarity)
        card.model_copy(update={"onnx_sha256": sha256_of(directory / ONNX_FILENAME)}).save(
            directory
        )
    return root


@pytest.fixture(scope="session")
def tiny_artifact(tiny_store: Path) -> Path:
    """A verified artifact folder: the tiny classifier and its card (``colours:1``)."""
    return tiny_store / "colours" / "1"


@pytest.fixture()
def make_client(tiny_store: Path, tmp_path: Path) -> Iterator[MakeClient]:
    """Build a TestClient over tiny models (default: ``colours:1``) with the given
    ``Settings`` fields."""
    workers: list[Worker] = []

    def make(served: dict[str, list[str]] | None = None, **settings: object) -> TestClient:
        defaults = {"workers": 1, "inference_threads": 1, "admin_keys": [ADMIN_KEY]}
        options = Settings(**(defaults | settings))
        control = ControlDir(tmp_path / f"control-{len(workers)}")
        store = FolderStore(tiny_store)
        models = served or {"colours": ["1"]}
        controller = serve_models(options, store, control, models)
        worker = Worker(options, store, controller, tuple(models))
        workers.append(worker)
        return TestClient(create_app(worker), headers={"Authorization": f"Bearer {ADMIN_KEY}"})

    yield make
    for worker in workers:
        worker.controller.stop()


@pytest.fixture()
def client(make_client: MakeClient) -> TestClient:
    return make_client()
