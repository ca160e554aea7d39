"""``inference.GRPCInferenceService``: the protocol's RPCs and Triton's model repository
extension, answered by the same functions as the REST routes (:mod:`service.http.v2`).

Every call is checked like its HTTP route: health is public, metadata and inference need
an ``infer`` key, the model repository an ``admin`` key, sent as ``authorization: Bearer
<key>`` or in the metadata key named by ``ARGOS_API_KEY_HEADER`` (lower-cased). Triton's
other RPCs (statistics, shared memory, tracing, logging, streaming) are not in Argos's
protocol (:mod:`service.grpc.protocol`): gRPC answers them ``UNIMPLEMENTED``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format

from service import metrics
from service.card import TAG_PATTERN, ModelCard
from service.errors import ArgosError, InvalidParameter, UnknownModel
from service.grpc import errors, tensors
from service.grpc.protocol import inference_pb2 as pb
from service.grpc.protocol import inference_pb2_grpc
from service.http.auth import Access, Refusal
from service.http.v2 import operations
from service.http.worker import Worker
from service.keys import Scope

T = TypeVar("T")
SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name


class InferenceServicer(inference_pb2_grpc.GRPCInferenceServiceServicer):
    """One worker's gRPC endpoint, over the same worker state as its HTTP API."""

    def __init__(self, worker: Worker, access: Access) -> None:
        self.worker = worker
        self.access = access

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Context) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Context) -> Any:
        return pb.ServerReadyResponse(ready=self.worker.is_ready())

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Context) -> Any:
        async def answer() -> pb.ServerMetadataResponse:
            return _message(operations.server_metadata(), pb.ServerMetadataResponse())

        return await self._call(context, "ServerMetadata", Scope.INFER, answer)

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Context) -> Any:
        async def answer() -> pb.ModelReadyResponse:
            try:
                self.worker.models.get(request.name, request.version or None)
            except UnknownModel:
                return pb.ModelReadyResponse(ready=False)
            return pb.ModelReadyResponse(ready=True)

        return await self._call(context, "ModelReady", Scope.INFER, answer)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Context) -> Any:
        async def answer() -> pb.ModelMetadataResponse:
            found = operations.model_metadata(self.worker, self._card(request))
            return _message(found, pb.ModelMetadataResponse())

        return await self._call(context, "ModelMetadata", Scope.INFER, answer)

    async def ModelConfig(self, request: pb.ModelConfigRequest, context: Context) -> Any:
        async def answer() -> pb.ModelConfigResponse:
            found = operations.model_config(self._card(request))
            return pb.ModelConfigResponse(config=_message(found, pb.ModelConfig()))

        return await self._call(context, "ModelConfig", Scope.INFER, answer)

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Context) -> Any:
        async def answer() -> pb.ModelInferResponse:
            worker = self.worker
            with (
                worker.uploads.lease() as uploads,
                worker.models.lease(request.model_name, request.model_version or None) as model,
            ):
                # The message is in memory already: it counts against the bytes of uploads
                # a worker holds, as an HTTP body does.
                uploads.take(request.ByteSize())
                decoded = tensors.decoded_request(request)
                outputs = await operations.infer(worker, model, decoded, endpoint="grpc_infer")
            return tensors.infer_response(model.card, request.id, outputs)

        return await self._call(context, "ModelInfer", Scope.INFER, answer)

    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: Context) -> Any:
        async def answer() -> pb.RepositoryIndexResponse:
            index = await operations.repository_index(self.worker, ready_only=request.ready)
            return pb.RepositoryIndexResponse(
                models=[
                    pb.RepositoryIndexResponse.ModelIndex(
                        name=entry.name,
                        version=entry.version or "",
                        state=entry.state,
                        reason=entry.reason,
                    )
                    for entry in index
                ]
            )

        return await self._call(context, "RepositoryIndex", Scope.ADMIN, answer)

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Context
    ) -> Any:
        async def answer() -> pb.RepositoryModelLoadResponse:
            parameters = tensors.parameter_values(request.parameters)
            await operations.load(self.worker, _tag(request.model_name), parameters)
            return pb.RepositoryModelLoadResponse()

        return await self._call(context, "RepositoryModelLoad", Scope.ADMIN, answer)

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Context
    ) -> Any:
        async def answer() -> pb.RepositoryModelUnloadResponse:
            parameters = tensors.parameter_values(request.parameters)
            await operations.unload(self.worker, _tag(request.model_name), parameters)
            return pb.RepositoryModelUnloadResponse()

        return await self._call(context, "RepositoryModelUnload", Scope.ADMIN, answer)

    def _card(self, request: pb.ModelMetadataRequest | pb.ModelConfigRequest) -> ModelCard:
        """The card of a loaded model version (default: the name's default), else a 404."""
        return self.worker.models.get(request.name, request.version or None).card

    async def _call(
        self, context: Context, method: str, scope: Scope, answer: Callable[[], Awaitable[T]]
    ) -> T:
        """``answer()`` once the call's key holds ``scope``; an error ends the call with its
        status, message and trailing metadata."""
        route = f"/{SERVICE}/{method}"
        try:
            self.access.authorize(scope, _headers(context))
        except Refusal as refusal:
            metrics.AUTH_REFUSALS.labels(route=route, reason=refusal.reason).inc()
            failure = refusal.error
        else:
            try:
                return await answer()
            except ArgosError as error:
                metrics.REJECTED.labels(endpoint=route, error=error.code).inc()
                failure = error
        await context.abort(
            errors.status_code(failure),
            failure.detail,
            trailing_metadata=errors.trailing_metadata(failure),
        )
        raise AssertionError("abort() raises")  # pragma: no cover


Context = grpc.aio.ServicerContext[Any, Any]


def _headers(context: Context) -> dict[str, str]:
    """The call's text metadata by (lower-case) key, as the key check reads headers."""
    return {
        key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)
    }


def _message(source: Any, message: T) -> T:
    """A pydantic reply of the REST API → the gRPC message with the same fields."""
    return json_format.ParseDict(source.model_dump(exclude_none=True), message)


def _tag(model_name: str) -> str:
    if not re.fullmatch(TAG_PATTERN, model_name):
        raise InvalidParameter(
            f"model_name {model_name!r} is not a model name or a store tag name:version"
        )
    return model_name
