"""/classify?explain=true and /classify/render in-process, on the tiny model's dense graphs."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.service.http.conftest import DENSE_MODEL, MakeClient
from tests.service.http.test_detect import red_square_on_blue

PNG = {"Content-Type": "image/png"}


@pytest.fixture()
def dense(make_client: MakeClient) -> TestClient:
    """A server whose default model has dense graphs, beside one that has none."""
    return make_client({DENSE_MODEL: ["1"], "colours": ["1"]})


def post(client: TestClient, query: str, path: str = "/classify", data: bytes | None = None):  # noqa: ANN201
    return client.post(f"{path}?{query}", content=data or red_square_on_blue(), headers=PNG)


def test_the_explanation_maps_the_top_label_over_the_whole_squashed_image(
    dense: TestClient,
) -> None:
    reply = post(dense, "explain=true&groups=true")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    explanation = body["explanation"]
    top = body["predictions"][0]
    assert explanation["label"] == top["label"] == "blue"
    assert explanation["index"] == top["index"] == 2
    assert explanation["box"] == [0, 0, 96, 96], "squash: the model input shows all of it"
    grid = np.array(explanation["grid"])
    assert grid.shape == (4, 4), "8x8 input at stride 2"
    assert grid[:2, :2].max() < grid[2:, 2:].min(), "the red quarter is where blue is not"
    assert all(value == round(value, 4) for value in grid.flat)
    assert body["groups"] and body["model"] == {"name": DENSE_MODEL, "version": "1"}


def test_explained_scores_are_the_plain_classifications(dense: TestClient) -> None:
    plain, explained = (post(dense, query).json() for query in ("top_k=3", "top_k=3&explain=true"))
    assert "explanation" not in plain
    got, expected = explained["predictions"], plain["predictions"]
    assert [p["index"] for p in got] == [p["index"] for p in expected]
    np.testing.assert_allclose([p["score"] for p in got], [p["score"] for p in expected], atol=1e-5)


def test_the_box_is_in_pixels_of_the_upright_upload(dense: TestClient) -> None:
    image = Image.new("RGB", (60, 20), (20, 20, 230))
    exif = Image.Exif()
    exif[0x0112] = 8  # stored sideways: upright it is 20 wide and 60 high
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif.tobytes())
    reply = dense.post("/classify?explain=true", content=buffer.getvalue(),
                       headers={"Content-Type": "image/jpeg"})  # fmt: skip
    assert reply.status_code == 200, reply.text
    assert reply.json()["explanation"]["box"] == [0, 0, 20, 60]


def test_a_model_without_dense_graphs_cannot_explain(dense: TestClient) -> None:
    for path in ("/classify", "/classify/render"):
        reply = post(dense, "explain=true&model=colours", path)
        assert reply.status_code == 422, reply.text
        assert reply.json()["error"] == "invalid_parameter"
        assert "colours:1 has none; ask without explain" in reply.json()["detail"]
    assert post(dense, "model=colours").status_code == 200


@pytest.mark.parametrize("value", ["maybe", "2", ""])
def test_a_bad_explain_value_is_422(dense: TestClient, value: str) -> None:
    reply = post(dense, f"explain={value}")
    assert reply.status_code == 422
    assert reply.json()["error"] == "invalid_parameter"
    assert reply.json()["detail"].startswith("explain: Input should be a valid boolean")


def test_render_draws_the_map_over_the_image(dense: TestClient) -> None:
    reply = post(dense, "", "/classify/render")
    assert reply.status_code == 200 and reply.headers["content-type"] == "image/png"
    assert reply.headers["X-Argos-Model"] == f"{DENSE_MODEL}:1"
    picture = np.asarray(Image.open(io.BytesIO(reply.content)).convert("RGB")).astype(int)
    original = np.asarray(Image.open(io.BytesIO(red_square_on_blue())).convert("RGB")).astype(int)
    assert picture.shape == original.shape == (96, 96, 3)
    assert np.abs(picture - original).sum(axis=2)[50:90, 50:90].min() > 30, "the map is over it"


@pytest.mark.parametrize("path", ["/classify?explain=true", "/classify/render"])
def test_uploads_are_checked_as_for_classify(dense: TestClient, path: str) -> None:
    reply = dense.post(path, content=b"not an image", headers={"Content-Type": "image/jpeg"})
    assert reply.status_code == 422 and reply.json()["error"] == "invalid_image"
    assert dense.post(path, content=b"x", headers={"Content-Type": "text/plain"}).status_code == 415


def test_a_full_worker_refuses_an_explanation(make_client: MakeClient) -> None:
    client = make_client({DENSE_MODEL: ["1"]}, max_inflight=1)
    with client.app.state.worker.admission.slot():
        reply = post(client, "explain=true")
    assert reply.status_code == 503 and reply.headers["Retry-After"]
