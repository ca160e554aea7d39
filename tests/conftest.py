"""Shared fixtures: the shared data folder, the default model, real servers on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from service import store
from service.settings import DEFAULT_MODEL

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TAG = f"{DEFAULT_MODEL}:latest"
DOGGY_DOOR_TAG = os.environ.get("ARGOS_DOGGY_DOOR_MODEL", "doggy-door:latest")
SERVER_START_TIMEOUT_S = 180


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared data folder (``ARGOS_SHARED_DIR``, default ``../shared``); required in CI."""
    path = Path(os.environ.get("ARGOS_SHARED_DIR", REPO.parent / "shared"))
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def argos_server(model_tag: str, **settings: str) -> Iterator[str]:
    """Run ``bentoml serve`` for ``model_tag`` on a free loopback port until the block ends."""
    port = free_port()
    env = (
        os.environ
        | {"ARGOS_MODEL": model_tag}
        | {f"ARGOS_{key.upper()}": value for key, value in settings.items()}
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bentoml",
            "serve",
            "service.service:Argos",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=REPO,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the Argos server exited with code {process.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the Argos server at {url} was not ready in {SERVER_START_TIMEOUT_S} s")


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
