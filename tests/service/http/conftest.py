"""An in-process Argos API over a tiny ONNX model: HTTP behaviour in milliseconds."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.card import ONNX_FILENAME, sha256_of
from service.http.app import create_app
from service.http.backend import Backend
from service.inference.model import ServedModel
from service.settings import Settings
from tests.service.test_card import make_card
from tests.service.tiny_model import write_tiny_classifier

MakeClient = Callable[..., TestClient]


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A verified artifact folder: the tiny classifier (red/green/blue) and its card."""
    directory = tmp_path_factory.mktemp("tiny-model")
    write_tiny_classifier(directory / ONNX_FILENAME)
    make_card(onnx_sha256=sha256_of(directory / ONNX_FILENAME)).save(directory)
    return directory


@pytest.fixture()
def make_client(tiny_artifact: Path) -> Iterator[MakeClient]:
    """Build a TestClient over the tiny model with the given ``Settings`` fields."""
    backends: list[Backend] = []

    def make(**settings: object) -> TestClient:
        options = Settings(**({"workers": 1, "inference_threads": 1} | settings))
        backend = Backend(options, ServedModel.load(tiny_artifact, options))
        backends.append(backend)
        return TestClient(create_app(backend))

    yield make
    for backend in backends:
        backend.model.runner.close()


@pytest.fixture()
def client(make_client: MakeClient) -> TestClient:
    return make_client()
