"""JSON objects of the Open Inference Protocol's REST API and Triton's extensions to it.

Field names and shapes follow kserve/open-inference-protocol (``inference_rest.md``) and
Triton's ``extension_*.md`` documents; parameter values are strings, numbers or booleans.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

Parameters = dict[str, Any]
Shape = list[Annotated[int, Field(ge=0)]]


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())


class RequestInput(_Message):
    name: str
    shape: Shape
    datatype: str
    parameters: Parameters = Field(default_factory=dict)
    data: list[Any] | None = None


class RequestOutput(_Message):
    name: str
    parameters: Parameters = Field(default_factory=dict)


class InferenceRequest(_Message):
    id: str | None = None
    parameters: Parameters = Field(default_factory=dict)
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(_Message):
    name: str
    shape: Shape
    datatype: str
    parameters: Parameters | None = None
    data: list[Any] | None = None


class InferenceResponse(_Message):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters | None = None
    outputs: list[ResponseOutput]


class ServerMetadata(_Message):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(_Message):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 for a variable-size dimension")


class ModelMetadata(_Message):
    name: str
    versions: list[str] | None = None
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ConfigTensor(_Message):
    name: str
    data_type: str = Field(description="Triton's TYPE_* name")
    dims: list[int] = Field(description="the full shape (max_batch_size is 0), -1 variable")


class ModelConfig(_Message):
    """The part of Triton's model configuration that clients such as perf_analyzer read."""

    name: str
    platform: str
    max_batch_size: int = Field(0, description="0: the dims include the batch dimension")
    input: list[ConfigTensor]
    output: list[ConfigTensor]


class ModelReady(_Message):
    name: str
    ready: bool


class ServerLive(_Message):
    live: bool


class ServerReady(_Message):
    ready: bool


class RepositoryIndexRequest(_Message):
    ready: bool = Field(False, description="list only the models ready for inference")


class RepositoryModel(_Message):
    name: str
    version: str | None = None
    state: str
    reason: str = ""


class RepositoryRequest(_Message):
    """The body of a load or unload request; it may be empty."""

    parameters: Parameters = Field(default_factory=dict)


class ErrorReply(_Message):
    error: str = Field(description="what was wrong and how to fix it")
