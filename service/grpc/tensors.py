"""gRPC inference messages ↔ the protocol's tensors as :mod:`service.http.v2.codec` reads
and writes them, so that both transports check a request with the same code and words.

An input's data comes in ``raw_input_contents`` (one entry per input, in order; a ``BYTES``
tensor's elements each a 4-byte little-endian length and the bytes, as ``tritonclient.grpc``
sends them) or in its ``contents.bytes_contents``. Outputs go back in
``raw_output_contents``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from pydantic import ValidationError

from service.card import ModelCard
from service.grpc.protocol import inference_pb2 as pb
from service.http.v2 import codec
from service.http.v2.errors import InvalidTensor, describe
from service.http.v2.schemas import InferenceRequest


class Parameter(Protocol):
    """An ``InferParameter`` or a ``ModelRepositoryParameter``: a oneof of scalar values."""

    def WhichOneof(self, name: str) -> str | None: ...


def parameter_values(parameters: Mapping[str, Parameter]) -> dict[str, Any]:
    """A protobuf parameter map → its Python values (None for an unset parameter)."""
    values: dict[str, Any] = {}
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        values[key] = getattr(parameter, choice) if choice else None
    return values


def decoded_request(request: pb.ModelInferRequest) -> codec.DecodedRequest:
    """The request's tensors as the codec holds them: their description, and each input's
    data in the binary tensor form."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidTensor(
            f"the request has {len(request.inputs)} inputs but {len(raw)} "
            "raw_input_contents; send one per input, in the order of the inputs"
        )
    codec.check_unique([tensor.name for tensor in request.inputs], "input")
    inputs, binary = [], {}
    for position, tensor in enumerate(request.inputs):
        parameters = parameter_values(tensor.parameters)
        codec.refuse_shared_memory(tensor.name, parameters)
        if raw and tensor.HasField("contents"):
            raise InvalidTensor(
                f"input {tensor.name!r} carries both contents and raw_input_contents; send one"
            )
        binary[tensor.name] = (
            raw[position] if raw else codec.encode_bytes_elements(tensor.contents.bytes_contents)
        )
        inputs.append(
            {
                "name": tensor.name,
                "shape": list(tensor.shape),
                "datatype": tensor.datatype,
                "parameters": parameters,
            }
        )
    outputs = [
        {"name": output.name, "parameters": parameter_values(output.parameters)}
        for output in request.outputs
    ]
    try:
        described = InferenceRequest.model_validate(
            {
                "id": request.id or None,
                "parameters": parameter_values(request.parameters),
                "inputs": inputs,
                "outputs": outputs or None,
            }
        )
    except ValidationError as error:
        raise InvalidTensor(f"the inference request is not valid: {describe(error)}") from None
    return codec.DecodedRequest(described, binary)


def infer_response(
    card: ModelCard, request_id: str, outputs: Sequence[codec.OutputTensor]
) -> pb.ModelInferResponse:
    """The reply: each output described, its data in ``raw_output_contents``."""
    response = pb.ModelInferResponse(
        model_name=card.name, model_version=card.version, id=request_id
    )
    for output in outputs:
        response.outputs.add(name=output.name, datatype=output.datatype, shape=output.array.shape)
        response.raw_output_contents.append(codec.tensor_bytes(output))
    return response
