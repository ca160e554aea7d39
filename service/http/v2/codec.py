"""Request bodies → encoded images, probabilities → response bodies.

Both tensor encodings of the protocol are read and written:

- JSON: tensor elements in the ``data`` array of the JSON object. Encoded images are not
  text, so each ``BYTES`` element of an image input is the image in base64.
- Triton's binary tensor extension: the JSON object, then each binary tensor's bytes in
  the order of the tensors, the JSON object's length in ``Inference-Header-Content-Length``
  and each tensor's length in its ``binary_data_size`` parameter. A ``BYTES`` tensor is
  its elements in row-major order, each a 4-byte little-endian length and the bytes.

Outputs are ``FP32`` probabilities, or with Triton's classification extension
(``parameters.classification = k``) ``BYTES`` ``[N, k]`` strings ``"score:index:label"``,
best first.
"""

from __future__ import annotations

import base64
import binascii
import struct
import zlib
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError
from starlette.requests import Request

from service.errors import PayloadTooLarge, UnsupportedMediaType
from service.http.uploads import FORM_OVERHEAD_BYTES, UploadLease, read_body
from service.http.v2.errors import InvalidTensor, describe
from service.http.v2.schemas import (
    InferenceRequest,
    InferenceResponse,
    RequestInput,
    ResponseOutput,
)

INFERENCE_HEADER = "Inference-Header-Content-Length"
BINARY_MEDIA_TYPE = "application/octet-stream"
JSON_MEDIA_TYPE = "application/json"

MAX_JSON_VALUES_BESIDES_IMAGES = 1024
"""Arrays, objects and elements a request's JSON object may hold besides its images: names,
shapes, parameters, outputs. A body with more cannot be a valid request, and is refused
before it is parsed: parsed, each would cost tens of bytes for one or two of the body."""
_LENGTH = struct.Struct("<I")
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


@dataclass(frozen=True, slots=True)
class DecodedRequest:
    """An inference request and the binary data each input sent after the JSON object."""

    request: InferenceRequest
    binary: dict[str, bytes]


@dataclass(frozen=True, slots=True)
class OutputRequest:
    """How one output is to be returned."""

    name: str
    binary: bool
    classification: int = 0  # 0: the tensor itself; k: the top-k classes as strings


@dataclass(frozen=True, slots=True)
class OutputTensor:
    """One output of a response: an ``FP32`` or ``BOOL`` array, or a ``BYTES`` array of
    ``bytes``."""

    name: str
    datatype: str
    array: np.ndarray
    binary: bool


@dataclass(frozen=True, slots=True)
class EncodedResponse:
    body: bytes
    header_length: int | None  # set when binary data follows the JSON object

    @property
    def headers(self) -> dict[str, str]:
        if self.header_length is None:
            return {"Content-Type": JSON_MEDIA_TYPE}
        return {"Content-Type": BINARY_MEDIA_TYPE, INFERENCE_HEADER: str(self.header_length)}


async def read_request(
    request: Request,
    max_upload_bytes: int,
    lease: UploadLease,
    *,
    max_images: int,
    in_thread: Callable[..., Awaitable[Any]],
) -> DecodedRequest:
    """Read, inflate and split an inference request; the body may hold ``max_upload_bytes``
    of images plus the JSON object's framing. Inflating and parsing run through
    ``in_thread``, off the event loop."""
    max_body_bytes = max_upload_bytes + FORM_OVERHEAD_BYTES
    sent = await read_body(request, max_body_bytes, lease)
    encoding = request.headers.get("content-encoding")
    body = sent if encoding is None else await in_thread(decompress, sent, encoding, max_body_bytes)
    if body is not sent:
        lease.take(len(body))
    return await in_thread(
        parse_request, body, request.headers.get(INFERENCE_HEADER), max_images=max_images
    )


def decompress(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """Undo a ``gzip`` or ``deflate`` Content-Encoding, never inflating past ``max_bytes``."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding not in _WBITS:
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding!r} is not accepted; send gzip, deflate or identity"
        )
    inflater = zlib.decompressobj(_WBITS[encoding])
    try:
        data = inflater.decompress(body, max_bytes + 1)
    except zlib.error as error:
        raise InvalidTensor(f"the {encoding} body could not be decompressed: {error}") from None
    if len(data) > max_bytes or inflater.unconsumed_tail:
        raise PayloadTooLarge(
            f"the {encoding} body inflates to more than {max_bytes:,} bytes, the upload limit"
        )
    if not inflater.eof:
        raise InvalidTensor(f"the {encoding} body is truncated")
    return data


def parse_request(body: bytes, header_length: str | None, *, max_images: int) -> DecodedRequest:
    """Split a request body into its JSON object and each input's binary data; a JSON
    object with more values than ``max_images`` images and their framing can hold is
    refused before it is parsed."""
    json_part, binary_part = _split(body, header_length)
    _check_value_count(json_part, max_images + MAX_JSON_VALUES_BESIDES_IMAGES)
    try:
        request = InferenceRequest.model_validate_json(json_part)
    except ValidationError as error:
        raise InvalidTensor(f"the inference request is not valid: {describe(error)}") from None
    check_unique([tensor.name for tensor in request.inputs], "input")
    binary: dict[str, bytes] = {}
    offset = 0
    for tensor in request.inputs:
        size = _binary_size(tensor)
        if size is None:
            continue
        if header_length is None:
            raise InvalidTensor(
                f"input {tensor.name!r} has binary_data_size but the request has no "
                f"{INFERENCE_HEADER} header giving the length of the JSON object"
            )
        if offset + size > len(binary_part):
            raise InvalidTensor(
                f"input {tensor.name!r} declares {size:,} bytes of binary data but only "
                f"{len(binary_part) - offset:,} remain after the JSON object"
            )
        binary[tensor.name] = binary_part[offset : offset + size]
        offset += size
    if offset != len(binary_part):
        raise InvalidTensor(
            f"{len(binary_part) - offset:,} bytes after the JSON object belong to no input; "
            "each binary input's binary_data_size must give its length"
        )
    return DecodedRequest(request, binary)


def images_of(decoded: DecodedRequest, input_name: str, *, max_images: int) -> list[bytes]:
    """The encoded images of the request's one input, ``input_name``, a ``BYTES`` ``[N]``
    tensor sent as binary data or base64 JSON."""
    inputs = decoded.request.inputs
    if len(inputs) != 1 or inputs[0].name != input_name:
        raise InvalidTensor(
            f"the model takes one input, {input_name!r} (BYTES [N] encoded images); "
            f"got {[tensor.name for tensor in inputs]}"
        )
    tensor, binary = inputs[0], decoded.binary.get(input_name)
    if tensor.datatype != "BYTES":
        raise InvalidTensor(
            f"input {tensor.name!r} has datatype {tensor.datatype}; send encoded images "
            "(JPEG, PNG, ...) as BYTES, one element per image"
        )
    if len(tensor.shape) != 1 or tensor.shape[0] < 1:
        raise InvalidTensor(
            f"input {tensor.name!r} has shape {tensor.shape}; send shape [N] with N >= 1 images"
        )
    count = tensor.shape[0]
    if count > max_images:
        raise InvalidTensor(
            f"input {tensor.name!r} holds {count} images; at most {max_images} per request"
        )
    images = (
        decode_bytes_elements(binary, tensor.name)
        if binary is not None
        else _base64_elements(tensor)
    )
    if len(images) != count:
        raise InvalidTensor(
            f"input {tensor.name!r} has shape [{count}] but holds {len(images)} elements"
        )
    for position, image in enumerate(images):
        if not image:
            raise InvalidTensor(f"element {position} of input {tensor.name!r} is empty")
    return images


def decode_bytes_elements(data: bytes, name: str = "tensor") -> list[bytes]:
    """A binary ``BYTES`` tensor → its elements (each: 4-byte little-endian length, bytes)."""
    view = memoryview(data)
    elements: list[bytes] = []
    offset = 0
    while offset < len(view):
        if offset + _LENGTH.size > len(view):
            raise InvalidTensor(
                f"element {len(elements)} of input {name!r} is cut off inside its "
                "4-byte length prefix"
            )
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += _LENGTH.size
        if offset + length > len(view):
            raise InvalidTensor(
                f"element {len(elements)} of input {name!r} declares {length:,} bytes but only "
                f"{len(view) - offset:,} remain"
            )
        elements.append(bytes(view[offset : offset + length]))
        offset += length
    return elements


def encode_bytes_elements(elements: Iterable[bytes]) -> bytes:
    """``BYTES`` elements → the binary tensor form (each: 4-byte little-endian length, bytes)."""
    return b"".join(_LENGTH.pack(len(element)) + element for element in elements)


def requested_outputs(
    request: InferenceRequest, available: Sequence[str], *, labels: int
) -> list[OutputRequest]:
    """The outputs to return and how; all of them when the request names none."""
    default_binary = _flag(request.parameters, "binary_data_output", "the request")
    if request.outputs is None:
        return [OutputRequest(name, default_binary) for name in available]
    check_unique([output.name for output in request.outputs], "requested output")
    wanted = []
    for output in request.outputs:
        if output.name not in available:
            raise InvalidTensor(
                f"the model has no output {output.name!r}; its outputs are {list(available)}"
            )
        where = f"output {output.name!r}"
        binary = (
            _flag(output.parameters, "binary_data", where)
            if "binary_data" in output.parameters
            else default_binary
        )
        count = output.parameters.get("classification", 0)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise InvalidTensor(
                f"{where}: classification must be a whole number of classes (1 to {labels}), "
                f"got {count!r}"
            )
        wanted.append(OutputRequest(output.name, binary, count))
    return wanted


def probability_outputs(
    probabilities: np.ndarray, labels: Sequence[str], wanted: Iterable[OutputRequest]
) -> list[OutputTensor]:
    """``(N, labels)`` probabilities → each wanted output: FP32 as is, or classified."""
    outputs = []
    for output in wanted:
        if output.classification:
            array = classification_strings(probabilities, labels, output.classification)
            outputs.append(OutputTensor(output.name, "BYTES", array, output.binary))
        else:
            array = np.asarray(probabilities, dtype=np.float32)
            outputs.append(OutputTensor(output.name, "FP32", array, output.binary))
    return outputs


def per_image_output(output: OutputRequest, values: np.ndarray) -> OutputTensor:
    """A ``[N]`` output of one value per image (``FP32`` or ``BOOL``); it has no classes."""
    if output.classification:
        raise InvalidTensor(f"output {output.name!r} has one value per image, no classes")
    datatype = "BOOL" if values.dtype == np.bool_ else "FP32"
    array = values.astype(np.bool_ if datatype == "BOOL" else np.float32)
    return OutputTensor(output.name, datatype, array, output.binary)


def classification_strings(probabilities: np.ndarray, labels: Sequence[str], k: int) -> np.ndarray:
    """``(N, labels)`` scores → ``(N, min(k, labels))`` ``b"score:index:label"``, best first.

    Scores are written as C's ``%f`` (six decimals), as Triton writes them; ties go to the
    lower index.
    """
    k = min(k, len(labels))
    rows = np.asarray(probabilities, dtype=np.float32)
    order = np.argsort(-rows, axis=1, kind="stable")[:, :k]
    strings = np.empty((rows.shape[0], k), dtype=np.object_)
    for row, indices in enumerate(order):
        for column, index in enumerate(indices):
            strings[row, column] = f"{rows[row, index]:f}:{index}:{labels[index]}".encode()
    return strings


def encode_response(
    *,
    model_name: str,
    model_version: str | None,
    request_id: str | None,
    outputs: Sequence[OutputTensor],
) -> EncodedResponse:
    """The response body: the JSON object, then the binary outputs' data in order."""
    described, blobs = [], []
    for output in outputs:
        entry = ResponseOutput(
            name=output.name, shape=list(output.array.shape), datatype=output.datatype
        )
        if output.binary:
            blob = tensor_bytes(output)
            entry.parameters = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry.data = _json_tensor(output)
        described.append(entry)
    response = InferenceResponse(
        model_name=model_name, model_version=model_version, id=request_id, outputs=described
    )
    json_part = response.model_dump_json(exclude_none=True).encode()
    if not any(output.binary for output in outputs):
        return EncodedResponse(json_part, None)
    return EncodedResponse(b"".join([json_part, *blobs]), len(json_part))


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    value = header_length.strip()
    if not (value.isascii() and value.isdigit()) or not 0 < int(value) <= len(body):
        raise InvalidTensor(
            f"{INFERENCE_HEADER} must be the length of the JSON object, between 1 and the "
            f"body's {len(body):,} bytes; got {header_length!r}"
        )
    return body[: int(value)], body[int(value) :]


def _check_value_count(json_part: bytes, limit: int) -> None:
    """Refuse a JSON object with more than ``limit`` values, before parsing it.

    Every value but the first of an array or object follows a comma, and arrays and objects
    nest at most a few hundred deep (the parser refuses deeper), so commas bound the values.
    They are counted at C speed, those inside strings too, which only a request with
    hundreds of commas in its names could notice."""
    if json_part.count(b",") > limit:
        raise InvalidTensor(
            f"the JSON object holds more than {limit:,} values (counted by their commas, "
            f"those inside strings too); an inference request holds one element per image, "
            f"at most {limit - MAX_JSON_VALUES_BESIDES_IMAGES:,}, and a few names and "
            "parameters"
        )


def _binary_size(tensor: RequestInput) -> int | None:
    """The input's ``binary_data_size``, or None when its data is in the JSON object."""
    parameters = tensor.parameters
    refuse_shared_memory(tensor.name, parameters)
    size = parameters.get("binary_data_size")
    has_data = tensor.data is not None
    if (size is None) == (not has_data):
        raise InvalidTensor(
            f"input {tensor.name!r} must carry exactly one of 'data' and "
            "parameters.binary_data_size"
        )
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise InvalidTensor(
            f"input {tensor.name!r}: binary_data_size must be a byte count, got {size!r}"
        )
    return size


def refuse_shared_memory(name: str, parameters: dict[str, Any]) -> None:
    if "shared_memory_region" in parameters:
        raise InvalidTensor(
            f"input {name!r} uses shared memory, which Argos does not offer; "
            "send the data in the request"
        )


def check_unique(names: list[str], what: str) -> None:
    """Refuse repeated tensor names."""
    if len(set(names)) != len(names):
        raise InvalidTensor(f"{what} names must be unique, got {names}")


def _base64_elements(tensor: RequestInput) -> list[bytes]:
    images = []
    for position, element in enumerate(_flatten(tensor.data or [])):
        if not isinstance(element, str):
            raise InvalidTensor(
                f"element {position} of input {tensor.name!r} is {type(element).__name__}; "
                "in JSON each image is a base64 string"
            )
        try:
            images.append(base64.b64decode(element, validate=True))
        except (binascii.Error, ValueError):
            raise InvalidTensor(
                f"element {position} of input {tensor.name!r} is not base64; in JSON each "
                "image is a base64 string (or send it as binary data)"
            ) from None
    return images


def _flatten(data: list[Any]) -> Iterator[Any]:
    """Row-major elements of a flat or nested JSON array."""
    for element in data:
        if isinstance(element, list):
            yield from _flatten(element)
        else:
            yield element


def _flag(parameters: dict[str, Any], key: str, where: str) -> bool:
    value = parameters.get(key, False)
    if not isinstance(value, bool):
        raise InvalidTensor(f"{where}: {key} must be true or false, got {value!r}")
    return value


def tensor_bytes(output: OutputTensor) -> bytes:
    """An output's data in the binary tensor form (``FP32`` little-endian, ``BYTES``
    length-prefixed), as both the binary extension and gRPC's raw contents carry it."""
    if output.datatype == "BYTES":
        return encode_bytes_elements(output.array.ravel())
    if output.datatype == "BOOL":
        return np.ascontiguousarray(output.array, dtype=np.bool_).tobytes()
    return np.ascontiguousarray(output.array, dtype="<f4").tobytes()


def _json_tensor(output: OutputTensor) -> list[Any]:
    if output.datatype == "BYTES":
        return [element.decode() for element in output.array.ravel()]
    return output.array.ravel().tolist()
