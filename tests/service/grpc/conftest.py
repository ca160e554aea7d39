"""An in-process gRPC endpoint over the tiny models: a ``grpc.aio`` server on a free
loopback port, on an event loop of its own thread, called with stock ``tritonclient.grpc``."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2_grpc

from service.grpc.server import GRPCServer
from service.http.auth import Access
from service.http.worker import Worker
from service.repository.desired_state import ControlDir
from service.repository.serving import serve_models
from service.settings import Settings
from tests.service.http.conftest import (  # noqa: F401 (fixtures)
    ADMIN_KEY,
    FolderStore,
    make_client,
    tiny_store,
)

INFER_KEY = "infer-key-of-the-grpc-tests"


@dataclass
class Endpoint:
    """A running gRPC endpoint, its worker, and clients of it."""

    worker: Worker
    server: GRPCServer
    loop: asyncio.AbstractEventLoop

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def client(self) -> triton.InferenceServerClient:
        return triton.InferenceServerClient(self.url)

    def stub(self) -> service_pb2_grpc.GRPCInferenceServiceStub:
        """A raw stub, for what ``tritonclient`` does not show (trailing metadata)."""
        return service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(self.url))

    def headers(self, key: str | None = INFER_KEY) -> dict[str, str]:
        return {} if key is None else {"authorization": f"Bearer {key}"}

    def on_loop(self, work: Callable[[], Any]) -> Future[Any]:
        """Run a coroutine function on the server's event loop."""
        return asyncio.run_coroutine_threadsafe(work(), self.loop)


MakeEndpoint = Callable[..., Endpoint]


@pytest.fixture()
def make_endpoint(tiny_store: Path, tmp_path: Path) -> Iterator[MakeEndpoint]:  # noqa: F811
    """Start a gRPC endpoint over tiny models (default ``colours:1``) with the given
    ``Settings`` fields; infer and admin keys are set."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    endpoints: list[Endpoint] = []

    def make(served: dict[str, list[str]] | None = None, **settings: object) -> Endpoint:
        defaults = {
            "workers": 1,
            "inference_threads": 1,
            "admin_keys": [ADMIN_KEY],
            "infer_keys": [INFER_KEY],
        }
        options = Settings(**(defaults | settings))
        control = ControlDir(tmp_path / f"control-{len(endpoints)}")
        store = FolderStore(tiny_store)
        models = served or {"colours": ["1"]}
        controller = serve_models(options, store, control, models)
        worker = Worker(options, store, controller, tuple(models))
        server = GRPCServer(worker, Access.from_settings(options), "127.0.0.1", 0)
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=10)
        endpoints.append(Endpoint(worker, server, loop))
        return endpoints[-1]

    yield make
    for endpoint in endpoints:
        endpoint.on_loop(endpoint.server.stop).result(timeout=30)
        endpoint.worker.controller.stop()
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()


@pytest.fixture()
def endpoint(make_endpoint: MakeEndpoint) -> Endpoint:
    return make_endpoint()
