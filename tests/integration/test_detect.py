"""/detect and /detect/render against a real server: two dogs in pets.jpg."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from PIL import Image

pytestmark = pytest.mark.integration

# Where each dog stands in pets.jpg (512x430), as x ranges of its body.
LEFT_DOG_X = (100, 270)
RIGHT_DOG_X = (340, 500)


def centre_x(box: list[int]) -> float:
    return (box[0] + box[2]) / 2


@pytest.mark.parametrize("mode", ["exact", "dense"])
def test_both_modes_find_the_two_dogs_as_separate_boxes(
    client: httpx.Client, images: Path, mode: str
) -> None:
    reply = client.post(f"/detect?mode={mode}", files={"image": (images / "pets.jpg").read_bytes()})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    dogs = [d for d in body["detections"] if d["label"] == "dog"]
    assert len(dogs) == 2, body["detections"]
    left, right = sorted(dogs, key=lambda d: centre_x(d["box"]))
    assert LEFT_DOG_X[0] <= centre_x(left["box"]) <= LEFT_DOG_X[1]
    assert RIGHT_DOG_X[0] <= centre_x(right["box"]) <= RIGHT_DOG_X[1]
    assert left["box"][2] <= right["box"][2] and left["box"][0] < right["box"][0]
    for dog in dogs:
        x0, y0, x1, y1 = dog["box"]
        assert 0 <= x0 < x1 <= 512 and 0 <= y0 < y1 <= 430
        assert 100 <= x1 - x0 <= 320
    assert [d["score"] for d in body["detections"]] == sorted(
        (d["score"] for d in body["detections"]), reverse=True
    )
    assert body["image"] == {"width": 512, "height": 430}
    assert body["windows"] > 10 and body["mode"] == mode


def test_a_single_label_can_be_asked_for(client: httpx.Client, images: Path) -> None:
    reply = client.post(
        "/detect?classes=macaw&window_sizes=0.8&threshold=0.3",
        files={"image": (images / "parrot.jpg").read_bytes()},
    )
    assert reply.status_code == 200, reply.text
    assert [d["label"] for d in reply.json()["detections"]][:1] == ["macaw"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("window_sizes=0", "window sizes must be fractions in (0, 1]"),
        ("window_sizes=1.5", "window sizes must be fractions in (0, 1]"),
        ("overlap=0.99", "overlap: Input should be less than or equal to 0.9"),
        ("threshold=-1", "threshold: Input should be greater than 0"),
        ("max_detections=0", "max_detections: Input should be greater than or equal to 1"),
        ("mode=fast", "mode: Input should be 'exact' or 'dense'"),
        ("classes=unicorn", "unknown classes ['unicorn']"),
        ("window_sizes=0.05&overlap=0.9", "windows on a 512x430 image; the limit is 512"),
    ],
)
def test_bad_parameters_get_422_with_a_message(
    client: httpx.Client, images: Path, query: str, message: str
) -> None:
    reply = client.post(f"/detect?{query}", files={"image": (images / "pets.jpg").read_bytes()})
    assert reply.status_code == 422, reply.text
    assert reply.json()["error"] == "invalid_parameter"
    assert message in reply.json()["detail"]


def test_bad_upload_gets_the_same_errors_as_classify(client: httpx.Client) -> None:
    reply = client.post("/detect", files={"image": b"not an image"})
    assert reply.status_code == 422
    assert reply.json()["error"] == "invalid_image"


def test_render_returns_the_image_with_boxes_beside_a_heatmap(
    client: httpx.Client, images: Path
) -> None:
    reply = client.post("/detect/render", files={"image": (images / "pets.jpg").read_bytes()})
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "image/png"
    picture = Image.open(io.BytesIO(reply.content))
    assert picture.size == (1024, 430)
