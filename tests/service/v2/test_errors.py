"""Failures on /v2 routes reply ``{"error": ...}`` with the protocol's statuses."""

from __future__ import annotations

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from service import metrics
from service.errors import ArgosError, InvalidImage, PayloadTooLarge
from service.http.v2.errors import InvalidTensor, ProtocolRoute

router = APIRouter(route_class=ProtocolRoute)
FAILURES: dict[str, ArgosError] = {
    "tensor": InvalidTensor("input 'image' has shape [2, 2]"),
    "image": InvalidImage("the image data could not be decoded"),
    "size": PayloadTooLarge("the upload is 30 bytes; the limit is 20 bytes"),
}


@router.post("/v2/models/{name}/infer")
async def infer(name: str, count: int = 1) -> dict[str, str]:
    if name in FAILURES:
        raise FAILURES[name]
    return {"model_name": name}


app = FastAPI()
app.include_router(router)
client = TestClient(app)


@pytest.mark.parametrize(("name", "status"), [("tensor", 400), ("image", 400), ("size", 413)])
def test_argos_errors_keep_their_message_in_the_protocol_shape(name, status):
    reply = client.post(f"/v2/models/{name}/infer")
    assert reply.status_code == status
    assert reply.json() == {"error": FAILURES[name].detail}


def test_invalid_parameters_are_400_naming_the_field():
    reply = client.post("/v2/models/ok/infer", params={"count": "many"})
    assert reply.status_code == 400
    assert reply.json().keys() == {"error"}
    assert "count" in reply.json()["error"]


def test_successful_replies_are_untouched():
    reply = client.post("/v2/models/ok/infer")
    assert (reply.status_code, reply.json()) == (200, {"model_name": "ok"})


def test_failures_are_counted_under_the_route_not_the_model_name():
    counter = metrics.REJECTED.labels(endpoint="/v2/models/{name}/infer", error="invalid_tensor")
    before = counter._value.get()
    client.post("/v2/models/tensor/infer")
    assert counter._value.get() == before + 1
