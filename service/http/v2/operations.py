"""What the protocol's calls answer, whichever transport carries them: the REST routes of
:mod:`service.http.v2.routes` and the gRPC servicer of :mod:`service.grpc` both call here,
so a model's metadata, the repository index and model control are written once."""

from __future__ import annotations

import asyncio
from importlib import metadata
from typing import Any

import numpy as np

from service.card import ModelCard
from service.errors import InvalidParameter
from service.http.uploads import IMAGE_FIELD
from service.http.v2 import codec
from service.http.v2.schemas import (
    ConfigTensor,
    ModelConfig,
    ModelMetadata,
    RepositoryModel,
    ServerMetadata,
    TensorMetadata,
)
from service.http.worker import Worker
from service.inference.model import ServedModel
from service.repository.control import READY, UNAVAILABLE

EXTENSIONS = ["binary_tensor_data", "classification", "model_repository"]
PLATFORM = "onnxruntime_onnx"


def server_metadata() -> ServerMetadata:
    """The server's name, version and protocol extensions."""
    return ServerMetadata(name="argos", version=_argos_version(), extensions=EXTENSIONS)


def model_metadata(worker: Worker, card: ModelCard) -> ModelMetadata:
    """The model's inputs and outputs: encoded images in, probabilities per label out."""
    return ModelMetadata(
        name=card.name,
        versions=[model.card.version for model in worker.models.served()[card.name]],
        platform=PLATFORM,
        inputs=[TensorMetadata(name=IMAGE_FIELD, datatype="BYTES", shape=[-1])],
        outputs=[
            TensorMetadata(name=output_name(card), datatype="FP32", shape=[-1, len(card.labels)]),
            *(
                TensorMetadata(name=name, datatype=datatype, shape=[-1])
                for name, datatype in _trust_outputs(card)
            ),
        ],
    )


def model_config(card: ModelCard) -> ModelConfig:
    """The same in the shape of Triton's model configuration."""
    return ModelConfig(
        name=card.name,
        platform=PLATFORM,
        input=[ConfigTensor(name=IMAGE_FIELD, data_type="TYPE_STRING", dims=[-1])],
        output=[
            ConfigTensor(
                name=output_name(card), data_type="TYPE_FP32", dims=[-1, len(card.labels)]
            ),
            *(
                ConfigTensor(name=name, data_type=f"TYPE_{datatype}", dims=[-1])
                for name, datatype in _trust_outputs(card)
            ),
        ],
    )


async def repository_index(worker: Worker, *, ready_only: bool) -> list[RepositoryModel]:
    """Every model version in the store, and whether this server serves it."""
    states = worker.controller.status().models
    index = []
    for name, stored_version in await asyncio.to_thread(worker.store.stored):
        state = states.get(name, {}).get(stored_version)
        if state is None:
            entry = RepositoryModel(
                name=name, version=stored_version, state=UNAVAILABLE, reason="unloaded"
            )
        else:
            entry = RepositoryModel(
                name=name, version=stored_version, state=state.state, reason=state.reason
            )
        if entry.state == READY or not ready_only:
            index.append(entry)
    return index


async def load(worker: Worker, tag: str, parameters: dict[str, Any]) -> RepositoryModel:
    """Load a model version from the store (default: its latest) on every worker."""
    name, wanted = _split_tag(tag, _checked(parameters))
    name, version = await asyncio.to_thread(worker.store.resolve, f"{name}:{wanted or 'latest'}")
    await worker.controller.load(name, version, worker.settings.model_load_timeout_s)
    return RepositoryModel(name=name, version=version, state=READY)


async def unload(worker: Worker, tag: str, parameters: dict[str, Any]) -> RepositoryModel:
    """Unload one version or every version of a model, on every worker."""
    name, wanted = _split_tag(tag, _checked(parameters))
    await worker.controller.unload(name, wanted, worker.settings.model_load_timeout_s)
    return RepositoryModel(name=name, version=wanted, state=UNAVAILABLE, reason="unloaded")


async def infer(
    worker: Worker,
    model: ServedModel,
    decoded: codec.DecodedRequest,
    *,
    endpoint: str,
    inline: bool = False,
) -> list[codec.OutputTensor]:
    """Classify the ``BYTES`` ``[N]`` input of encoded images of a decoded request through
    the worker's one inference path, and return the outputs it asks for. ``inline``: as
    :meth:`~service.inference.pipeline.Pipeline.classify` (for HTTP, whose requests in
    progress admission counts)."""
    card = model.card
    pipeline = worker.pipeline
    images = codec.images_of(decoded, IMAGE_FIELD, max_images=pipeline.max_images)
    available = [output_name(card), *(name for name, _ in _trust_outputs(card))]
    wanted = codec.requested_outputs(decoded.request, available, labels=len(card.labels))
    result = await pipeline.classify(
        model,
        images,
        endpoint=endpoint,
        where=lambda i: f"image {i} of input {IMAGE_FIELD!r}",
        inline=inline,
    )
    familiar = result.familiar or []
    per_image = {
        FAMILIARITY: np.array([image.familiarity for image in familiar], dtype=np.float32),
        UNKNOWN: np.array([image.unknown for image in familiar], dtype=np.bool_),
    }
    outputs = [output for output in wanted if output.name not in per_image]
    tensors = codec.probability_outputs(result.probabilities, card.labels, outputs)
    for output in wanted:
        if output.name in per_image:
            tensors.append(codec.per_image_output(output, per_image[output.name]))
    return tensors


def output_name(card: ModelCard) -> str:
    return card.preprocessing.output_name


FAMILIARITY = "familiarity"
UNKNOWN = "unknown"


def _trust_outputs(card: ModelCard) -> list[tuple[str, str]]:
    """The per-image outputs beside the probabilities, for models with familiarity."""
    return [] if card.familiarity is None else [(FAMILIARITY, "FP32"), (UNKNOWN, "BOOL")]


def _checked(parameters: dict[str, Any]) -> dict[str, Any]:
    unsupported = sorted(key for key in parameters if key == "config" or key.startswith("file:"))
    if unsupported:
        raise InvalidParameter(
            f"Argos loads models from its BentoML store and takes no {unsupported}; choose a "
            "version with parameters.version or a tag name:version in the path"
        )
    return parameters


def _split_tag(tag: str, parameters: dict[str, Any]) -> tuple[str, str | None]:
    name, _, in_path = tag.partition(":")
    given = parameters.get("version")
    if given is not None and not isinstance(given, str):
        raise InvalidParameter(f"parameters.version must be a string, got {given!r}")
    if in_path and given and in_path != given:
        raise InvalidParameter(
            f"the path asks for version {in_path!r}, parameters.version {given!r}"
        )
    return name, in_path or given or None


def _argos_version() -> str:
    try:
        return metadata.version("argos")
    except metadata.PackageNotFoundError:
        return "unknown"
