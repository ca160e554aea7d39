"""What the OpenAPI document says about uploads: request bodies, error replies, examples.

The routes read image bytes from the request themselves (:mod:`service.http.uploads`), so
FastAPI cannot infer a request body; these fragments describe it for Swagger UI, generated
clients and OpenAPI fuzzers. The examples are replies of the real service (the photos are
``cat.bmp`` and ``pets.jpg`` of the shared test images); the contract tests send the same
requests and compare.
"""

from __future__ import annotations

from typing import Any

from service.formats import FORMATS, NAMES
from service.http.schemas import ErrorResponse
from service.http.uploads import IMAGE_FIELD

RAW_MEDIA_TYPES = [image_format.media_type for image_format in FORMATS] + [
    "application/octet-stream"
]
_BINARY = {"type": "string", "format": "binary"}

IMAGE_UPLOAD: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": f"One image ({NAMES}): a multipart/form-data file field "
        f"{IMAGE_FIELD!r}, or the image itself as the body.",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [IMAGE_FIELD],
                    "properties": {IMAGE_FIELD: _BINARY | {"description": "the image file"}},
                },
                "encoding": {IMAGE_FIELD: {"contentType": "image/*, application/octet-stream"}},
            },
            **{media_type: {"schema": _BINARY} for media_type in RAW_MEDIA_TYPES},
        },
    }
}
"""``openapi_extra`` of a route that reads an image upload."""

_MODEL = {"name": "imagenet-mobilenetv2", "version": "20261123-211308"}
_HOW_TO_SEND = (
    "send multipart/form-data with a file field 'image', "
    "or the image itself as the body with Content-Type image/jpeg, image/png, ..."
)

CLASSIFY_EXAMPLE = {
    "model": _MODEL,
    "predictions": [
        {"label": "Egyptian_cat", "index": 285, "score": 0.8452963829040527},
        {"label": "tabby", "index": 281, "score": 0.05473747476935387},
        {"label": "tiger_cat", "index": 282, "score": 0.040992721915245056},
        {"label": "lynx", "index": 287, "score": 0.0010329714277759194},
        {"label": "plastic_bag", "index": 728, "score": 0.000967110856436193},
    ],
    "groups": [
        {"name": "cat", "score": 0.9414870738983154},
        {"name": "dog", "score": 0.004441764671355486},
    ],
    "timing_ms": {"preprocess": 7.83, "inference": 49.52, "total": 57.82},
}
"""``POST /classify?groups=true`` with ``cat.bmp``."""

DETECT_EXAMPLE = {
    "model": _MODEL,
    "mode": "exact",
    "image": {"width": 512, "height": 430},
    "detections": [
        {"label": "dog", "score": 0.9903008937835693, "box": [273, 107, 483, 317]},
        {"label": "dog", "score": 0.9760905504226685, "box": [51, 72, 250, 272]},
    ],
    "windows": 93,
    "timing_ms": {"preprocess": 240.69, "inference": 1787.3, "total": 2028.0},
}
"""``POST /detect`` with ``pets.jpg``."""

EXPLAIN_EXAMPLE = {
    "model": _MODEL,
    "predictions": [{"label": "Italian_greyhound", "index": 171, "score": 0.726661741733551}],
    "explanation": {
        "label": "Italian_greyhound",
        "index": 171,
        "grid": [
            [0.5556, 0.999, 0.9883, 0.0078, 0.007, 0.0011, 0.0014],
            [0.957, 0.9986, 0.9525, 0.3237, 0.0097, 0.0004, 0.0011],
            [0.9665, 0.9997, 0.9985, 0.9691, 0.4, 0.0, 0.0],
            [0.9188, 0.9525, 0.7891, 0.0354, 0.898, 0.0, 0.0001],
            [0.0158, 0.0093, 0.006, 0.0018, 0.1922, 0.0, 0.0],
            [0.0004, 0.0006, 0.0009, 0.0006, 0.1427, 0.1734, 0.533],
            [0.0006, 0.0006, 0.0008, 0.0007, 0.0006, 0.0032, 0.0023],
        ],
        "box": [67.88, 26.88, 444.12, 403.12],
    },
    "timing_ms": {"preprocess": 7.3, "inference": 8.94, "total": 16.64},
}
"""``POST /classify?explain=true&top_k=1`` with ``pets.jpg``."""

CLASSIFY_EXAMPLES = {
    "labels": {"summary": "groups=true, cat.bmp", "value": CLASSIFY_EXAMPLE},
    "explanation": {"summary": "explain=true&top_k=1, pets.jpg", "value": EXPLAIN_EXAMPLE},
}
DETECT_EXAMPLES = {"pets": {"summary": "pets.jpg", "value": DETECT_EXAMPLE}}

ERROR_EXAMPLES: dict[int, dict[str, dict[str, str]]] = {
    400: {
        "empty_body": {
            "error": "empty_body",
            "detail": f"the uploaded image is empty (0 bytes); {_HOW_TO_SEND}",
        },
        "missing_image": {
            "error": "missing_image",
            "detail": f"the multipart body has no 'image' field (it has ['photo']); {_HOW_TO_SEND}",
        },
    },
    413: {
        "payload_too_large": {
            "error": "payload_too_large",
            "detail": "the upload is 30,000,000 bytes; the limit is 20,971,520 bytes",
        },
    },
    415: {
        "unsupported_media_type": {
            "error": "unsupported_media_type",
            "detail": f"Content-Type 'text/plain' is not accepted; {_HOW_TO_SEND}",
        },
    },
    422: {
        "invalid_image": {
            "error": "invalid_image",
            "detail": "the upload (12 bytes, starting b'not an i') is not an image format "
            f"Argos can read; send {NAMES}",
        },
        "invalid_parameter": {
            "error": "invalid_parameter",
            "detail": "top_k: Input should be greater than or equal to 1 (got '0')",
        },
    },
    503: {
        "overloaded": {
            "error": "overloaded",
            "detail": "the server holds 64 of 64 images or jobs and this request needs 1; "
            "retry shortly",
        },
        "shutting_down": {
            "error": "shutting_down",
            "detail": "the server is shutting down; retry on another replica",
        },
    },
}
"""Error replies of the upload routes, by status and then by ``error`` code."""

_ERROR_DESCRIPTIONS = {
    400: "No image in the request: an empty body, or a multipart body without an "
    f"{IMAGE_FIELD!r} file field",
    413: "The upload, or the decoded image, is larger than the service accepts",
    415: "The Content-Type is neither multipart/form-data nor an image type",
    422: "The bytes are not an image Argos can read, or a parameter is out of range",
    503: "The worker is at its limit of images, its queue waited too long, or it is "
    "shutting down; retry after the seconds in Retry-After",
}
_RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}
}


def upload_responses(ok_examples: dict[str, Any] | None = None) -> dict[int | str, Any]:
    """``responses`` of a route that reads an image upload: its error replies with
    examples, and examples of its 200 reply (OpenAPI Example objects by name) when it
    answers JSON."""
    responses: dict[int | str, Any] = {
        status: {
            "model": ErrorResponse,
            "description": _ERROR_DESCRIPTIONS[status],
            **({"headers": _RETRY_AFTER} if status == 503 else {}),
            "content": {
                "application/json": {
                    "examples": {
                        code: {"summary": body["detail"].split(";")[0], "value": body}
                        for code, body in examples.items()
                    }
                }
            },
        }
        for status, examples in ERROR_EXAMPLES.items()
    }
    if ok_examples is not None:
        responses[200] = {"content": {"application/json": {"examples": ok_examples}}}
    return responses
