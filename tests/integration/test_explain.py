"""/classify?explain=true and /classify/render against a real server: where the dogs are."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.integration

Box = tuple[float, float, float, float]

# The two dogs of pets.jpg (512x430), read off the image: each from its tail tip or ear
# tips to its feet, as a detection box would hold it.
LEFT_DOG: Box = (105, 4, 262, 294)
RIGHT_DOG: Box = (346, 163, 495, 364)
MOST = 0.5


def cell_boxes(box: Box, rows: int, cols: int) -> np.ndarray:
    """The (rows, cols, 4) boxes of the cells that cut ``box`` into a rows x cols grid."""
    x0, y0, x1, y1 = box
    xs, ys = np.linspace(x0, x1, cols + 1), np.linspace(y0, y1, rows + 1)
    return np.array(
        [[(xs[j], ys[i], xs[j + 1], ys[i + 1]) for j in range(cols)] for i in range(rows)]
    )


def share_inside(grid: np.ndarray, box: Box, regions: list[Box]) -> float:
    """The share of the map's mass in cells that lie wholly inside one of ``regions``."""
    cells = cell_boxes(box, *grid.shape)
    inside = np.zeros(grid.shape, dtype=bool)
    for x0, y0, x1, y1 in regions:
        inside |= (
            (cells[..., 0] >= x0) & (cells[..., 1] >= y0)
            & (cells[..., 2] <= x1) & (cells[..., 3] <= y1)
        )  # fmt: skip
    return float(grid[inside].sum() / grid.sum())


def explain(client: httpx.Client, image: Path, query: str = "") -> dict:
    reply = client.post(f"/classify?explain=true&{query}", files={"image": image.read_bytes()})
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_most_of_the_map_lies_on_the_dogs(client: httpx.Client, images: Path) -> None:
    explanation = explain(client, images / "pets.jpg")["explanation"]
    grid = np.array(explanation["grid"])
    assert grid.shape == (7, 7), "224-pixel input at stride 32"
    assert explanation["box"] == pytest.approx([67.875, 26.875, 444.125, 403.125], abs=0.01)
    share = share_inside(grid, explanation["box"], [LEFT_DOG, RIGHT_DOG])
    uniform = share_inside(np.ones_like(grid), explanation["box"], [LEFT_DOG, RIGHT_DOG])
    print(f"{explanation['label']}: {share:.3f} of the map on the dogs (uniform: {uniform:.3f})")
    assert uniform < MOST, "a map that shows nothing fails"
    assert share > MOST, (explanation["label"], share)


def test_the_explained_scores_are_the_plain_ones(client: httpx.Client, images: Path) -> None:
    data = (images / "cat_720p.jpg").read_bytes()
    plain = client.post("/classify?top_k=1000", files={"image": data}).json()["predictions"]
    explained = explain(client, images / "cat_720p.jpg", "top_k=1000")
    scores = {p["index"]: p["score"] for p in explained["predictions"]}
    assert max(abs(p["score"] - scores[p["index"]]) for p in plain) <= 1e-5
    assert explained["explanation"]["label"] == plain[0]["label"] == "Egyptian_cat"


def test_render_draws_the_map_on_the_box_only(client: httpx.Client, images: Path) -> None:
    data = (images / "pets.jpg").read_bytes()
    reply = client.post("/classify/render", files={"image": data})
    assert reply.status_code == 200 and reply.headers["content-type"] == "image/png"
    picture = np.asarray(Image.open(io.BytesIO(reply.content)).convert("RGB")).astype(int)
    photo = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
    assert picture.shape == photo.shape == (430, 512, 3)
    changed = np.abs(picture - photo).sum(axis=2) > 10
    assert changed[30:400, 70:440].mean() > 0.9, "the map covers the centre crop"
    assert not changed[:, :60].any() and not changed[:, 450:].any()
