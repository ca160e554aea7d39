"""Unexpected failures, header parsing and labels: what a hostile or unlucky request meets."""

from __future__ import annotations

import base64
import json

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from service.http.route_labels import UNMATCHED, leaf_routes, route_template
from service.http.v2.codec import MAX_JSON_VALUES_BESIDES_IMAGES, parse_request
from service.http.v2.errors import InvalidTensor
from tests.service.http.conftest import MakeClient
from tests.service.http.test_classify import png


def _samples(name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found = {}
    for family in text_string_to_metric_families(generate_latest(REGISTRY).decode()):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def _failures(endpoint: str) -> float:
    return _samples("argos_failed_requests_total").get((("endpoint", endpoint),), 0.0)


@pytest.fixture()
def broken(make_client: MakeClient, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    """A client whose model registry fails with an error no route expects."""
    client = make_client()
    registry = client.app.state.worker.models

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internal state")

    monkeypatch.setattr(registry, "lease", fail)
    monkeypatch.setattr(registry, "get", fail)
    return TestClient(client.app, raise_server_exceptions=False)


def test_an_unexpected_error_on_an_argos_route_is_a_json_500(broken: TestClient) -> None:
    before = _failures("/model")
    reply = broken.get("/model")
    assert reply.status_code == 500
    body = reply.json()
    assert body["error"] == "internal_error"
    assert reply.headers["X-Request-Id"] in body["detail"]
    assert "secret" not in reply.text and "Traceback" not in reply.text
    assert _failures("/model") == before + 1


def test_an_unexpected_error_on_v2_is_a_500_in_the_protocol_shape(broken: TestClient) -> None:
    before = _failures("/v2/models/{name}")
    reply = broken.get("/v2/models/colours")
    assert reply.status_code == 500
    assert list(reply.json()) == ["error"]
    assert reply.headers["X-Request-Id"] in reply.json()["error"]
    assert "secret" not in reply.text
    assert _failures("/v2/models/{name}") == before + 1


@pytest.mark.parametrize("value", ["\xb2", "\xb9\xb2", "1\xb3", "-5", "0x10", "1e3"])
def test_a_length_header_of_anything_but_ascii_digits_is_a_400(value: str) -> None:
    """Header values reach the app decoded as latin-1, where ``"\xb2"`` (superscript two)
    passes ``str.isdigit`` but not ``int``."""
    body = json.dumps(
        {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["eA=="]}]}
    ).encode()
    with pytest.raises(InvalidTensor, match="Inference-Header-Content-Length"):
        parse_request(body, value, max_images=8)


def test_a_json_body_of_countless_arrays_is_refused_before_it_is_parsed(
    client: TestClient,
) -> None:
    arrays = b"[" + b",".join([b"[]"] * 200_000) + b"]"
    body = b'{"inputs":[{"name":"image","shape":[1],"datatype":"BYTES","data":%s}]}' % arrays
    reply = client.post("/v2/models/colours/infer", content=body)
    assert reply.status_code == 400
    assert "values" in reply.json()["error"]


def test_a_request_with_images_and_parameters_is_within_the_value_count(
    client: TestClient,
) -> None:
    image = base64.b64encode(png((250, 10, 10))).decode()
    request = {
        "id": "a, b, [c]",
        "parameters": {f"p{i}": [i, {"x": i}] for i in range(MAX_JSON_VALUES_BESIDES_IMAGES // 8)},
        "inputs": [{"name": "image", "shape": [8], "datatype": "BYTES", "data": [image] * 8}],
    }
    reply = client.post("/v2/models/colours/infer", content=json.dumps(request))
    assert reply.status_code == 200, reply.text


def test_routes_are_labelled_by_template(client: TestClient) -> None:
    routes = leaf_routes(client.app.routes)

    def label(method: str, path: str) -> str:
        return route_template(routes, {"type": "http", "method": method, "path": path})

    assert label("GET", "/v2/models/anything/ready") == "/v2/models/{name}/ready"
    assert label("POST", "/v2/repository/models/x:1/load") == "/v2/repository/models/{tag}/load"
    assert label("POST", "/classify") == "/classify"
    assert label("GET", "/metrics") == "/metrics"
    assert label("GET", "/v2/made/up") == "/v2/{path}"
    assert label("GET", "/made-up-123") == UNMATCHED
    assert label("GET", "/static/any/file.css") == "/static/{path}"


def test_refusals_are_labelled_by_route_template(client: TestClient) -> None:
    for name in ("a1", "b2", "c3"):
        assert client.get(f"/v2/models/{name}/ready").status_code == 404
    endpoints = {dict(labels)["endpoint"] for labels in _samples("argos_rejected_requests_total")}
    assert "/v2/models/{name}/ready" in endpoints
    assert not {"/v2/models/a1/ready", "/v2/models/b2/ready"} & endpoints
