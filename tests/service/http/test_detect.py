"""/detect and /detect/render in-process on the tiny colour model (exact mode)."""

from __future__ import annotations

import io

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from tests.service.http.conftest import MakeClient


def red_square_on_blue(size: int = 96) -> bytes:
    image = Image.new("RGB", (size, size), (20, 20, 230))
    image.paste((230, 20, 20), (0, 0, size // 2, size // 2))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def detect(client: TestClient, query: str, path: str = "/detect"):  # noqa: ANN201
    return client.post(f"{path}?{query}", content=red_square_on_blue(),
                       headers={"Content-Type": "image/png"})  # fmt: skip


def test_exact_mode_finds_the_red_square_where_it_is(client: TestClient) -> None:
    reply = detect(client, "classes=red&window_sizes=0.5&overlap=0.5&threshold=0.5")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["windows"] == 9 and body["image"] == {"width": 96, "height": 96}
    assert [d["label"] for d in body["detections"]] == ["red"]
    x0, y0, x1, y1 = body["detections"][0]["box"]
    assert x0 <= 8 and y0 <= 8 and x1 <= 60 and y1 <= 60


def test_dense_mode_needs_dense_graphs(client: TestClient) -> None:
    reply = detect(client, "mode=dense")
    assert reply.status_code == 422
    assert "no dense backbone/head graphs; use mode=exact" in reply.json()["detail"]


def test_too_many_windows_are_refused_with_the_count(make_client: MakeClient) -> None:
    reply = detect(make_client(detect_max_windows=8), "window_sizes=0.5&overlap=0.5")
    assert reply.status_code == 422
    assert "need 9 windows on a 96x96 image; the limit is 8" in reply.json()["detail"]


def test_unknown_classes_are_named(client: TestClient) -> None:
    reply = detect(client, "classes=purple")
    assert reply.status_code == 422
    assert "unknown classes ['purple']" in reply.json()["detail"]


def test_render_draws_the_boxes_on_the_left_and_the_heatmap_on_the_right(
    client: TestClient,
) -> None:
    query = "classes=red&window_sizes=0.5&overlap=0.5&threshold=0.5"
    boxes = detect(client, query).json()["detections"]
    reply = detect(client, query, "/detect/render")
    assert reply.status_code == 200 and reply.headers["content-type"] == "image/png"
    picture = np.asarray(Image.open(io.BytesIO(reply.content)).convert("RGB")).astype(int)
    assert picture.shape == (96, 192, 3)
    left, right = picture[:, :96], picture[:, 96:]
    original = np.asarray(Image.open(io.BytesIO(red_square_on_blue()))).astype(int)
    x0, y0, x1, y1 = boxes[0]["box"]
    changed = np.abs(left - original).sum(axis=2) > 60
    assert changed[y0 + 5 : y1 - 5, x0].all() or changed[y0 + 5 : y1 - 5, x0 + 1].all()
    assert not changed[70:90, 70:90].any()  # far from the box: untouched
    assert np.abs(right - original).sum() > 0  # the heatmap is blended over the photo


def test_a_full_worker_refuses_detection_too(make_client: MakeClient) -> None:
    client = make_client(max_inflight=1)
    with client.app.state.worker.admission.slot():
        reply = detect(client, "")
    assert reply.status_code == 503 and reply.headers["Retry-After"]
