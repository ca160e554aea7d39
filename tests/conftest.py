"""Shared fixtures: the shared data folder, the default model, real servers on loopback."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import httpx
import pytest
from google.protobuf import (
    descriptor_pool,
    symbol_database,  # noqa: F401 (binds the default pool first)
)

from harness.local_server import local_server
from harness.local_server import shared_dir as local_shared_dir
from service.settings import DEFAULT_MODEL
from training import store

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TAG = f"{DEFAULT_MODEL}:latest"
DOGGY_DOOR_TAG = os.environ.get("ARGOS_DOGGY_DOOR_MODEL", "doggy-door:latest")


def _import_tritonclient_grpc_apart() -> None:
    """Import ``tritonclient.grpc`` with its generated modules in a descriptor pool of their
    own: they define package ``inference`` as Argos's protocol modules do, protobuf refuses
    two files that define one symbol in the default pool, and the tests call Argos's server
    with the stock client in one process."""
    with mock.patch.object(
        descriptor_pool, "Default", return_value=descriptor_pool.DescriptorPool()
    ):
        importlib.import_module("tritonclient.grpc")


_import_tritonclient_grpc_apart()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared data folder (``ARGOS_SHARED_DIR``, default ``../shared``); required in CI."""
    path = local_shared_dir()
    if not (path / "images").is_dir():
        message = f"shared data folder {path} is not available"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def images(shared_dir: Path) -> Path:
    return shared_dir / "images"


@pytest.fixture(scope="session")
def default_model(shared_dir: Path) -> str:
    """The default model's tag, building the model first when the store lacks it."""
    if not store.exists(DEFAULT_TAG):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "training",
                "default-model",
                "--if-missing",
                "--keras-cache",
                str(shared_dir / "keras" / "models"),
                "--parity-images",
                str(shared_dir / "images"),
            ],
            check=True,
            cwd=REPO,
        )
    return DEFAULT_TAG


@contextmanager
def argos_server(model_tag: str, **settings: str) -> Iterator[str]:
    """A real server for ``model_tag`` on a free loopback port until the block ends."""
    env = {"ARGOS_MODEL": model_tag} | {
        f"ARGOS_{key.upper()}": value for key, value in settings.items()
    }
    with local_server(env) as server:
        yield server.url


@pytest.fixture(scope="session")
def argos_url(default_model: str) -> Iterator[str]:
    """Base URL of a real server running the default ImageNet model."""
    with argos_server(default_model) as url:
        yield url


@pytest.fixture(scope="session")
def doggy_door_model(shared_dir: Path) -> str:
    """The doggy-door model's tag (``bo`` / ``not_bo``), training it first when the store
    lacks it (about a minute on two CPU cores)."""
    if not store.exists(DOGGY_DOOR_TAG):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "training",
                "train",
                "--config",
                str(REPO / "training" / "configs" / "doggy_door.yaml"),
                "--name",
                DOGGY_DOOR_TAG.split(":")[0],
                "--keras-cache",
                str(shared_dir / "keras" / "models"),
                "--data",
                str(shared_dir / "data" / "doggy_door"),
                "--verbose",
                "2",
            ],
            check=True,
            cwd=REPO,
            env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")},
        )
    if not store.exists(DOGGY_DOOR_TAG):
        pytest.fail(f"training did not produce {DOGGY_DOOR_TAG} (only ':latest' can be trained)")
    return DOGGY_DOOR_TAG


@pytest.fixture(scope="session")
def doggy_door_url(doggy_door_model: str) -> Iterator[str]:
    """Base URL of a real server running the doggy-door model (``bo`` / ``not_bo``)."""
    with argos_server(doggy_door_model) as url:
        yield url


@pytest.fixture()
def client(argos_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=argos_url, timeout=60) as http:
        yield http
