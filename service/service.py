"""The BentoML service: ``bentoml serve service.service:Argos``.

Each worker process owns its model's onnxruntime sessions and a runner thread that batches
concurrent requests (:mod:`service.inference`); the HTTP API (:mod:`service.http.app`) runs on
the worker's event loop and calls the runner in-process.

On SIGTERM a worker drains: ``/readyz`` turns 503 and new requests are refused with 503,
``Retry-After`` and ``Connection: close`` at once, everything already accepted is answered,
and work still queued when ``ARGOS_DRAIN_TIMEOUT_S`` runs out is answered 503. The worker
goes on accepting connections for ``ARGOS_DRAIN_ACCEPT_S``, and then until its listen
backlog is empty, so that those already queued get that 503 rather than a reset; a
connection that has not sent its first request yet is given the idle timeout to send it
(:mod:`service.http.transport`).

Connections are guarded by :mod:`service.http.transport`, BentoML's request metrics are
labelled by route (:mod:`service.http.route_labels`), and requests are traced only when a
tracing exporter is configured (:mod:`service.tracing`).

With ``ARGOS_GRPC_PORT`` set, each worker also serves the Open Inference Protocol over gRPC
(:mod:`service.grpc`) on its event loop, on the same worker state; on SIGTERM its gRPC server
stops accepting calls and answers those it accepted within ``ARGOS_DRAIN_TIMEOUT_S``.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import TypeVar

import bentoml

from service import metrics, supervision
from service.grpc.server import GRPCServer
from service.http import route_labels, transport
from service.http.app import create_app
from service.http.balance import ConnectionBalance
from service.http.readiness import ReadinessReasons
from service.http.shedding import LoadShedder
from service.http.worker import Worker
from service.keys import KeyRing, Scope, listening_beyond_loopback
from service.repository.desired_state import ControlDir, share_with_workers
from service.repository.serving import serve_models
from service.repository.store import BentoStore, resolve_all
from service.settings import get_settings
from service.tracing import tracing_options

T = TypeVar("T")
SERVICE_NAME = "argos"
logger = logging.getLogger("argos.service")
settings = get_settings()
app = create_app()
transport.install(transport.ConnectionLimits.from_settings(settings))
route_labels.install(app.routes)


def _log_through_bentoml() -> None:
    """Send ``argos.*`` log records to the handlers BentoML set up for this worker."""
    argos_logger = logging.getLogger("argos")
    argos_logger.setLevel(logging.INFO)
    argos_logger.propagate = False
    for handler in logging.getLogger("bentoml").handlers:
        if handler not in argos_logger.handlers:
            argos_logger.addHandler(handler)


def _warn_if_exposed_without_keys(keys: KeyRing) -> None:
    """Open inference is fine on loopback; beyond it, say so loudly."""
    exposed = listening_beyond_loopback()
    if exposed and not keys.configured(Scope.INFER):
        logger.warning(
            "listening on %s without infer keys: anyone who reaches the port may classify. "
            "Set ARGOS_INFER_KEYS_FILE (README: Security)",
            ", ".join(sorted(set(exposed))),
        )


def _before_sigterm(callback: Callable[[], None]) -> None:
    """Call ``callback`` when SIGTERM arrives, then the handler installed before (uvicorn's,
    which stops accepting connections and waits for the open ones) once the listen backlog
    is empty, after ``ARGOS_DRAIN_ACCEPT_S`` at least.

    Both run in a thread of their own: a signal handler runs between two bytecodes of the
    main thread, which may hold a lock the callback needs (a metric's, a logger's), and
    would then wait for itself forever."""
    previous = signal.getsignal(signal.SIGTERM)

    def drain_then_stop(signum: int, frame: FrameType | None) -> None:
        callback()
        if callable(previous):
            transport.stop_after_backlog(
                lambda: previous(signum, frame),
                at_least_s=settings.drain_accept_s,
                at_most_s=settings.drain_accept_s + settings.drain_timeout_s,
                other_ports=frozenset({settings.grpc_port} if settings.grpc_port else ()),
            )

    def handle(signum: int, frame: FrameType | None) -> None:
        threading.Thread(
            target=drain_then_stop, args=(signum, frame), name="argos-sigterm", daemon=True
        ).start()

    signal.signal(signal.SIGTERM, handle)


def _packaging(tags: list[str]) -> Callable[[type[T]], type[T]]:
    """Declare each model as a ``BentoModel`` attribute, so that ``bentoml build`` packages
    every model of ``ARGOS_MODELS`` into the bento."""

    def declare(cls: type[T]) -> type[T]:
        for index, tag in enumerate(tags):
            setattr(cls, f"artifact_{index}", bentoml.models.BentoModel(tag))
        return cls

    return declare


@bentoml.asgi_app(app, path="/")
@bentoml.service(
    name=SERVICE_NAME,
    workers=settings.worker_count,
    traffic={"timeout": settings.request_timeout_s},
    logging={"access": {"enabled": settings.access_log}},
    tracing=tracing_options(SERVICE_NAME),
)
@_packaging(settings.model_tags)
class Argos:
    """One worker: the models, their runners, and the API's view of them."""

    def __init__(self) -> None:
        server_pid = supervision.die_with_server(settings.drain_accept_s + settings.drain_timeout_s)
        _log_through_bentoml()
        worker_index = bentoml.server_context.worker_index or 1  # 1-based
        store = BentoStore()
        control = ControlDir.for_server(server_pid)
        models = resolve_all(store, settings.model_tags)
        controller = serve_models(settings, store, control, models, worker_index - 1)
        self.worker = Worker(settings, store, controller, tuple(models))
        app.state.worker = self.worker
        transport.shed_load(LoadShedder(self.worker, app.state.access, app.routes))
        if settings.worker_count > 1:
            balance = ConnectionBalance(control.path, settings.worker_count, worker_index - 1)
            transport.balance_connections(balance)
        metrics.READY.set(int(self.worker.is_ready()))
        self.grpc: GRPCServer | None = None
        _before_sigterm(self.drain)
        # Everything allocated so far lives as long as the worker: move it out of the
        # collector's reach, or each full collection walks it (100-300 ms pauses measured).
        gc.collect()
        gc.freeze()

    @bentoml.on_deployment
    def prepare_server() -> None:
        """In the ``bentoml serve`` process, before it starts the workers: their supervision
        and their control folder."""
        supervision.record_server()
        share_with_workers(settings.control_dir)

    @bentoml.on_startup
    async def listen(self) -> None:
        """On the worker's event loop: the gRPC inference service when a port is set, then
        the warning about open inference, which sees both listeners."""
        if settings.grpc_port is not None:
            self.grpc = GRPCServer(
                self.worker, app.state.access, settings.grpc_host, settings.grpc_port
            )
            await self.grpc.start()
        _warn_if_exposed_without_keys(app.state.access.keys)

    def __is_ready__(self) -> bool:
        ready = self.worker.is_ready()
        metrics.READY.set(int(ready))
        return ready

    def drain(self) -> None:
        """Refuse new requests; give queued work ``drain_timeout_s`` to finish."""
        if self.worker.admission.draining:
            return
        self.worker.admission.draining = True
        if self.grpc is not None:
            self.grpc.drain()
        metrics.READY.set(0)
        logger.info("draining: %d requests held", self.worker.admission.inflight)
        deadline = threading.Timer(settings.drain_timeout_s, self._abort)
        deadline.daemon = True
        deadline.start()

    def _abort(self) -> None:
        for models in self.worker.models.served().values():
            for model in models:
                model.runner.abort("the server's drain time ran out")

    @bentoml.on_shutdown
    async def close(self) -> None:
        """After the last HTTP connection closed and the last accepted gRPC call ended:
        stop the runner threads."""
        if self.grpc is not None:
            await self.grpc.stop()
        self.worker.controller.stop()


Argos.add_asgi_middleware(ReadinessReasons, api=app)
