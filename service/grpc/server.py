"""A worker's gRPC server: started on the worker's event loop, stopped by its drain.

Every worker binds ``ARGOS_GRPC_PORT`` with ``SO_REUSEPORT`` (gRPC's default on Linux), so
the kernel spreads new connections over the workers as it does for the HTTP port. A
message may be as large as an HTTP inference body.
"""

from __future__ import annotations

import asyncio
import logging

import grpc

from service.grpc.protocol import inference_pb2_grpc
from service.grpc.servicer import InferenceServicer
from service.http.auth import Access
from service.http.uploads import FORM_OVERHEAD_BYTES
from service.http.worker import Worker

logger = logging.getLogger("argos.grpc")


class GRPCServer:
    """``inference.GRPCInferenceService`` of one worker on ``host:port``."""

    def __init__(self, worker: Worker, access: Access, host: str, port: int) -> None:
        self.servicer = InferenceServicer(worker, access)
        self.address = f"{host}:{port}"
        self.port = port
        """The bound port (the one asked for, or the one picked for port 0)."""
        self.grace_s = worker.settings.drain_timeout_s
        self.max_message_bytes = worker.settings.max_upload_bytes + FORM_OVERHEAD_BYTES
        self._server: grpc.aio.Server | None = None
        self._stopping: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Bind and serve, on the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._server = grpc.aio.server(
            options=[
                ("grpc.so_reuseport", 1),
                ("grpc.max_receive_message_length", self.max_message_bytes),
            ]
        )
        inference_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(self.servicer, self._server)
        self.port = self._server.add_insecure_port(self.address)
        await self._server.start()
        logger.info("gRPC inference service on %s", self.address)

    def drain(self) -> None:
        """Stop accepting calls and give the accepted ones the drain time; callable from
        any thread or a signal handler."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._begin_stop)

    async def stop(self) -> None:
        """Drain (when not yet draining) and wait until the last accepted call ended."""
        self._begin_stop()
        if self._stopping is not None:
            await self._stopping

    def _begin_stop(self) -> None:
        if self._stopping is None and self._server is not None:
            self._stopping = asyncio.ensure_future(self._server.stop(self.grace_s))
