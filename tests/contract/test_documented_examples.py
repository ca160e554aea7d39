"""The OpenAPI document of a real server: every upload described, every example true."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from service.formats import FORMATS
from service.http.openapi import (
    CLASSIFY_EXAMPLE,
    DETECT_EXAMPLE,
    ERROR_EXAMPLES,
    EXPLAIN_EXAMPLE,
)

pytestmark = pytest.mark.integration

UPLOAD_PATHS = ["/classify", "/classify/render", "/detect", "/detect/render"]
ERROR_STATUSES = {"400", "413", "415", "422", "503"}


@pytest.fixture(scope="module")
def openapi(argos_url: str) -> dict[str, Any]:
    return httpx.get(f"{argos_url}/openapi.json", timeout=30).raise_for_status().json()


@pytest.mark.parametrize("path", UPLOAD_PATHS)
def test_uploads_are_multipart_or_raw_image_bodies(openapi: dict[str, Any], path: str) -> None:
    body = openapi["paths"][path]["post"]["requestBody"]
    assert body["required"] is True
    multipart = body["content"]["multipart/form-data"]["schema"]
    assert multipart["required"] == ["image"]
    assert multipart["properties"]["image"]["format"] == "binary"
    raw = {f.media_type for f in FORMATS} | {"application/octet-stream"}
    assert raw <= set(body["content"])
    assert all(body["content"][t]["schema"]["format"] == "binary" for t in raw)


@pytest.mark.parametrize("path", UPLOAD_PATHS)
def test_every_error_status_has_a_schema_and_examples(openapi: dict[str, Any], path: str) -> None:
    responses = openapi["paths"][path]["post"]["responses"]
    assert set(responses) >= ERROR_STATUSES
    for status in ERROR_STATUSES:
        content = responses[status]["content"]["application/json"]
        assert content["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
        assert content["examples"], (path, status)
    ok = responses["200"]["content"]
    assert ("image/png" in ok) if path.endswith("render") else ok["application/json"]["examples"]


def assert_scores_match(got: list[dict], documented: list[dict], name: str) -> None:
    assert [{k: v for k, v in d.items() if k != "score"} for d in got] == [
        {k: v for k, v in d.items() if k != "score"} for d in documented
    ]
    assert [d["score"] for d in got] == pytest.approx([d["score"] for d in documented], abs=2e-3)


def test_classify_example_is_what_the_server_answers(client: httpx.Client, images: Path) -> None:
    reply = client.post("/classify?groups=true", files={"image": (images / "cat.bmp").read_bytes()})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model"]["name"] == CLASSIFY_EXAMPLE["model"]["name"]
    assert_scores_match(body["predictions"], CLASSIFY_EXAMPLE["predictions"], "predictions")
    assert_scores_match(body["groups"], CLASSIFY_EXAMPLE["groups"], "groups")
    assert set(body["timing_ms"]) == set(CLASSIFY_EXAMPLE["timing_ms"])


def test_explain_example_is_what_the_server_answers(client: httpx.Client, images: Path) -> None:
    reply = client.post(
        "/classify?explain=true&top_k=1", files={"image": (images / "pets.jpg").read_bytes()}
    )
    assert reply.status_code == 200, reply.text
    body, documented = reply.json(), EXPLAIN_EXAMPLE["explanation"]
    assert_scores_match(body["predictions"], EXPLAIN_EXAMPLE["predictions"], "predictions")
    assert {k: v for k, v in body["explanation"].items() if k != "grid"} == {
        k: v for k, v in documented.items() if k != "grid"
    }
    assert body["explanation"]["grid"] == [
        pytest.approx(row, abs=2e-3) for row in documented["grid"]
    ]


def test_detect_example_is_what_the_server_answers(client: httpx.Client, images: Path) -> None:
    reply = client.post("/detect", files={"image": (images / "pets.jpg").read_bytes()})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    for key in ("mode", "image", "windows"):
        assert body[key] == DETECT_EXAMPLE[key]
    assert_scores_match(body["detections"], DETECT_EXAMPLE["detections"], "detections")


def error_requests(cat: bytes) -> dict[str, dict[str, Any]]:
    """A request that gets each documented 4xx reply (the 503s are tested in process)."""
    return {
        "empty_body": {"content": b"", "headers": {"Content-Type": "image/png"}},
        "missing_image": {"files": {"photo": ("cat.bmp", cat)}},
        "payload_too_large": {
            "content": bytes(30_000_000),
            "headers": {"Content-Type": "image/jpeg"},
        },
        "unsupported_media_type": {"content": b"hello", "headers": {"Content-Type": "text/plain"}},
        "invalid_image": {"content": b"not an image", "headers": {"Content-Type": "image/jpeg"}},
        "invalid_parameter": {"files": {"image": cat}, "params": {"top_k": "0"}},
    }


@pytest.mark.parametrize(
    ("status", "code"),
    [(s, c) for s, examples in ERROR_EXAMPLES.items() if s < 500 for c in examples],
)
def test_error_examples_are_what_the_server_answers(
    client: httpx.Client, images: Path, status: int, code: str
) -> None:
    request = error_requests((images / "cat.bmp").read_bytes())[code]
    reply = client.post("/classify", **request)
    assert reply.status_code == status
    assert reply.json() == ERROR_EXAMPLES[status][code]
