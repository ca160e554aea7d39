"""The BentoML service: ``bentoml serve service.service:Argos``.

Each worker process owns its model's onnxruntime sessions and a runner thread that batches
concurrent requests (:mod:`service.inference`); the HTTP API (:mod:`service.http.app`) runs on
the worker's event loop and calls the runner in-process.

On SIGTERM a worker drains: ``/readyz`` turns 503 and new requests are refused with 503 and
``Retry-After`` at once, everything already accepted is answered, and work still queued
when ``ARGOS_DRAIN_TIMEOUT_S`` runs out is answered 503.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import bentoml

from service.http.app import create_app
from service.http.backend import Backend
from service.inference.model import ServedModel
from service.settings import get_settings

logger = logging.getLogger("argos.service")
settings = get_settings()
app = create_app()


def _log_through_bentoml() -> None:
    """Send ``argos.*`` log records to the handlers BentoML set up for this worker."""
    argos_logger = logging.getLogger("argos")
    argos_logger.setLevel(logging.INFO)
    argos_logger.propagate = False
    for handler in logging.getLogger("bentoml").handlers:
        if handler not in argos_logger.handlers:
            argos_logger.addHandler(handler)


def _before_sigterm(callback: Callable[[], None]) -> None:
    """Call ``callback`` when SIGTERM arrives, then the handler installed before (uvicorn's,
    which stops accepting connections and waits for the open ones)."""
    previous = signal.getsignal(signal.SIGTERM)

    def handle(signum: int, frame: FrameType | None) -> None:
        callback()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, handle)


@bentoml.asgi_app(app, path="/")
@bentoml.service(
    name="argos",
    workers=settings.worker_count,
    traffic={"timeout": settings.request_timeout_s},
    logging={"access": {"enabled": settings.access_log}},
)
class Argos:
    """One worker: the model, its runner, and the API's view of them."""

    artifact = bentoml.models.BentoModel(settings.model)

    def __init__(self) -> None:
        _log_through_bentoml()
        model = ServedModel.load(Path(self.artifact.path), settings)
        self.backend = Backend(settings, model)
        app.state.backend = self.backend
        _before_sigterm(self.drain)

    def __is_ready__(self) -> bool:
        return not self.backend.admission.draining

    def drain(self) -> None:
        """Refuse new requests; give queued work ``drain_timeout_s`` to finish."""
        if self.backend.admission.draining:
            return
        self.backend.admission.draining = True
        logger.info("draining: %d requests held", self.backend.admission.inflight)
        runner = self.backend.model.runner
        deadline = threading.Timer(
            settings.drain_timeout_s, runner.abort, args=("the server's drain time ran out",)
        )
        deadline.daemon = True
        deadline.start()

    @bentoml.on_shutdown
    def close(self) -> None:
        """After the last connection closed: stop the runner thread."""
        runner = self.backend.model.runner
        runner.close()
        runner.join(settings.drain_timeout_s)
