"""The REST endpoints of the Open Inference Protocol at ``/v2``, with Triton's binary tensor,
classification and model repository extensions.

Inference shares everything with ``POST /classify``: the upload ceiling, the card-driven
preprocessing, the admission control and each model's runner, so one image costs the same
either way.
"""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from service.card import NAME_PATTERN, TAG_PATTERN, VERSION_PATTERN, ModelCard
from service.errors import InvalidParameter
from service.http.auth import ADMIN, INFER, PUBLIC
from service.http.uploads import FORM_OVERHEAD_BYTES, read_body
from service.http.v2 import codec, operations
from service.http.v2.errors import ProtocolRoute, UnknownEndpoint, describe
from service.http.v2.schemas import (
    ErrorReply,
    ModelConfig,
    ModelMetadata,
    ModelReady,
    RepositoryIndexRequest,
    RepositoryModel,
    RepositoryRequest,
    ServerLive,
    ServerMetadata,
    ServerReady,
)
from service.http.worker import MODEL_HEADER, CurrentWorker, Uploads, Worker

Message = TypeVar("Message", bound=BaseModel)
router = APIRouter(
    prefix="/v2",
    route_class=ProtocolRoute,
    tags=["Open Inference Protocol"],
    responses={status: {"model": ErrorReply} for status in (400, 401, 403, 404, 413, 503)},
)

ModelName = Annotated[str, Path(description="a served model's name", pattern=NAME_PATTERN)]
ModelVersion = Annotated[
    str, Path(description="one of its loaded versions", pattern=VERSION_PATTERN)
]


async def loaded_card(
    worker: CurrentWorker, name: ModelName, version: ModelVersion | None = None
) -> ModelCard:
    """Dependency: the card of a loaded model version (default: the name's default), else
    a 404."""
    return worker.models.get(name, version).card


LoadedCard = Annotated[ModelCard, Depends(loaded_card)]
TagInPath = Annotated[
    str,
    Path(
        description="a model name, or a store tag ``name:version`` to pick the version",
        pattern=TAG_PATTERN,
    ),
]


@router.get("/health/live", response_model=ServerLive, dependencies=[PUBLIC])
async def live() -> ServerLive:
    """The process answers HTTP."""
    return ServerLive(live=True)


@router.get("/health/ready", response_model=ServerReady, dependencies=[PUBLIC])
async def ready(request: Request) -> JSONResponse:
    """200 when every wanted model is loaded and the server is not draining, else 503."""
    worker: Worker | None = getattr(request.app.state, "worker", None)
    is_ready = worker is not None and worker.is_ready()
    return JSONResponse(ServerReady(ready=is_ready).model_dump(), 200 if is_ready else 503)


@router.get("", response_model=ServerMetadata, dependencies=[INFER])
async def server_metadata() -> ServerMetadata:
    """The server's name, version and protocol extensions."""
    return operations.server_metadata()


@router.get("/models/{name}", response_model=ModelMetadata, dependencies=[INFER])
@router.get("/models/{name}/versions/{version}", response_model=ModelMetadata, dependencies=[INFER])
async def model_metadata(worker: CurrentWorker, card: LoadedCard) -> ModelMetadata:
    """The model's inputs and outputs: encoded images in, probabilities per label out."""
    return operations.model_metadata(worker, card)


@router.get("/models/{name}/config", response_model=ModelConfig, dependencies=[INFER])
@router.get(
    "/models/{name}/versions/{version}/config", response_model=ModelConfig, dependencies=[INFER]
)
async def model_config(card: LoadedCard) -> ModelConfig:
    """The same in the shape of Triton's model configuration."""
    return operations.model_config(card)


@router.get("/models/{name}/ready", response_model=ModelReady, dependencies=[INFER])
@router.get(
    "/models/{name}/versions/{version}/ready", response_model=ModelReady, dependencies=[INFER]
)
async def model_ready(card: LoadedCard) -> ModelReady:
    """200 when the model (version) is loaded; 404 when it is not."""
    return ModelReady(name=card.name, ready=True)


@router.post(
    "/models/{name}/infer",
    response_class=Response,
    responses={200: {"content": {codec.JSON_MEDIA_TYPE: {}, codec.BINARY_MEDIA_TYPE: {}}}},
    dependencies=[INFER],
)
@router.post(
    "/models/{name}/versions/{version}/infer",
    response_class=Response,
    responses={200: {"content": {codec.JSON_MEDIA_TYPE: {}, codec.BINARY_MEDIA_TYPE: {}}}},
    dependencies=[INFER],
)
async def infer(
    request: Request,
    worker: CurrentWorker,
    uploads: Uploads,
    name: ModelName,
    version: ModelVersion | None = None,
) -> Response:
    """Classify a ``BYTES`` ``[N]`` input of encoded images: ``FP32`` ``[N, labels]``, or
    with ``parameters.classification = k`` the ``BYTES`` ``[N, k]`` ``"score:index:label"``."""
    with worker.models.lease(name, version) as model:
        card = model.card
        pipeline = worker.pipeline
        decoded = await codec.read_request(
            request,
            worker.settings.max_upload_bytes,
            uploads,
            max_images=pipeline.max_images,
            in_thread=pipeline.in_thread,
        )
        outputs = await operations.infer(worker, model, decoded, endpoint="v2_infer", inline=True)
    encoded = codec.encode_response(
        model_name=card.name,
        model_version=card.version,
        request_id=decoded.request.id,
        outputs=outputs,
    )
    return Response(encoded.body, headers=encoded.headers | {MODEL_HEADER: card.tag})


@router.post("/repository/index", response_model=list[RepositoryModel], dependencies=[ADMIN])
async def repository_index(
    request: Request, worker: CurrentWorker, uploads: Uploads
) -> list[RepositoryModel]:
    """Every model version in the store, and whether this server serves it."""
    query = _parse(RepositoryIndexRequest, await read_body(request, FORM_OVERHEAD_BYTES, uploads))
    return await operations.repository_index(worker, ready_only=query.ready)


@router.post("/repository/models/{tag}/load", response_model=RepositoryModel, dependencies=[ADMIN])
async def load(
    request: Request, worker: CurrentWorker, uploads: Uploads, tag: TagInPath
) -> RepositoryModel:
    """Load a model version from the store (default: its latest) on every worker; it
    becomes the model's default version. Versions loaded before stay loaded."""
    options = _parse(RepositoryRequest, await read_body(request, FORM_OVERHEAD_BYTES, uploads))
    return await operations.load(worker, tag, options.parameters)


@router.post(
    "/repository/models/{tag}/unload", response_model=RepositoryModel, dependencies=[ADMIN]
)
async def unload(
    request: Request, worker: CurrentWorker, uploads: Uploads, tag: TagInPath
) -> RepositoryModel:
    """Unload one version (``name:version`` or ``parameters.version``) or every version of a
    model, on every worker. Requests in flight on it finish first; other models are untouched."""
    options = _parse(RepositoryRequest, await read_body(request, FORM_OVERHEAD_BYTES, uploads))
    return await operations.unload(worker, tag, options.parameters)


@router.api_route(
    "/{path:path}", methods=["GET", "POST"], include_in_schema=False, dependencies=[PUBLIC]
)
async def not_found(path: str) -> None:
    raise UnknownEndpoint(f"/v2/{path} is not an endpoint of the Open Inference Protocol")


def _parse(schema: type[Message], body: bytes) -> Message:
    """A repository request body (empty means no options), or a 400 saying what is wrong."""
    try:
        return schema.model_validate_json(body or b"{}")
    except ValidationError as error:
        raise InvalidParameter(f"the body is not a {schema.__name__}: {describe(error)}") from None
