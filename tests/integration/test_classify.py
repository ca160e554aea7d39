"""/classify, /model and the operational endpoints against a real server on loopback."""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration

CAT_CLASSES = {"tabby", "tiger_cat", "Persian_cat", "Siamese_cat", "Egyptian_cat"}


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def top1(reply: httpx.Response) -> str:
    assert reply.status_code == 200, reply.text
    return reply.json()["predictions"][0]["label"]


def test_cat_photo_as_multipart(client: httpx.Client, images: Path) -> None:
    reply = client.post("/classify", files={"image": (images / "cat.bmp").read_bytes()})
    body = reply.json()
    assert top1(reply) == "Egyptian_cat"
    assert body["model"]["name"] == "imagenet-mobilenetv2"
    scores = [p["score"] for p in body["predictions"]]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True)
    assert set(body["timing_ms"]) == {"preprocess", "inference", "total"}


def test_parrot_photo_as_raw_body(client: httpx.Client, images: Path) -> None:
    reply = client.post(
        "/classify?top_k=1",
        content=(images / "parrot.jpg").read_bytes(),
        headers={"Content-Type": "image/jpeg"},
    )
    assert top1(reply) == "macaw"
    assert len(reply.json()["predictions"]) == 1


def test_groups_are_reported_on_request(client: httpx.Client, images: Path) -> None:
    reply = client.post("/classify?groups=true", files={"image": (images / "cat.bmp").read_bytes()})
    groups = {g["name"]: g["score"] for g in reply.json()["groups"]}
    assert groups["cat"] > 0.5 > groups["dog"]


@pytest.mark.parametrize("mode", ["CMYK", "I;16", "P", "RGBA", "LA"])
def test_odd_modes_of_a_real_photo_still_classify(
    client: httpx.Client, images: Path, mode: str
) -> None:
    photo = Image.open(images / "cat.bmp").convert("RGB")
    if mode == "I;16":
        wide = np.asarray(photo.convert("L"), dtype=np.uint16) * 257
        data = encode(Image.fromarray(wide), "PNG")
    else:
        data = encode(photo.convert(mode), "JPEG" if mode == "CMYK" else "PNG")
    assert top1(client.post("/classify", files={"image": data})) in CAT_CLASSES


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_rotated_photo_is_turned_upright(
    client: httpx.Client, images: Path, orientation: int
) -> None:
    photo = Image.open(images / "parrot.jpg").convert("RGB")
    stored = photo.rotate(90 if orientation == 6 else -90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(stored, "JPEG", quality=95, exif=exif)
    assert top1(client.post("/classify", files={"image": data})) == "macaw"


def test_animated_gif_uses_its_first_frame(client: httpx.Client, images: Path) -> None:
    frames = [Image.open(images / "cat.bmp").convert("RGB"), Image.new("RGB", (512, 341))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert top1(client.post("/classify", files={"image": data})) in CAT_CLASSES


def test_truncated_photo_is_refused(client: httpx.Client, images: Path) -> None:
    data = (images / "cat_720p.jpg").read_bytes()
    reply = client.post("/classify", files={"image": data[: len(data) // 3]})
    assert reply.status_code == 422
    assert reply.json()["error"] == "invalid_image"


def test_decompression_bomb_is_refused_before_decoding(client: httpx.Client) -> None:
    bomb = encode(Image.new("1", (12_000, 12_000)), "PNG")
    reply = client.post("/classify", files={"image": bomb})
    assert reply.status_code == 413
    assert "12000x12000 = 144,000,000 pixels; the limit is 50,000,000" in reply.json()["detail"]


def test_model_card_is_served(client: httpx.Client) -> None:
    card = client.get("/model").json()
    assert len(card["labels"]) == 1000 and card["labels"][285] == "Egyptian_cat"
    assert card["preprocessing"]["resize"] == "center_crop"
    assert card["parity"]["max_abs_diff"] <= 1e-5 and card["parity"]["top1_agreement"] == 1.0


def test_probes_and_metrics(client: httpx.Client, images: Path) -> None:
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200
    client.post("/classify", files={"image": (images / "cat.bmp").read_bytes()})
    client.post("/classify", files={"image": b"not an image"})
    samples = [
        sample
        for family in text_string_to_metric_families(client.get("/metrics").text)
        for sample in family.samples
    ]
    top1_counts = {
        (s.labels["model"].split(":")[0], s.labels["label"]): s.value
        for s in samples
        if s.name == "argos_top1_predictions_total"
    }
    assert top1_counts[("imagenet-mobilenetv2", "Egyptian_cat")] >= 1
    assert any(
        s.name == "argos_rejected_requests_total" and s.labels["error"] == "invalid_image"
        for s in samples
    )


def post_until_admitted(url: str, data: bytes, attempts: int = 10) -> httpx.Response:
    """POST an image as a polite client does: a 503 is tried again after its Retry-After."""
    for _ in range(attempts):
        reply = httpx.post(url, files={"image": data}, timeout=60)
        if reply.status_code != 503:
            break
        time.sleep(float(reply.headers["Retry-After"]))
    return reply


def test_concurrent_requests_share_inference_batches(argos_url: str, images: Path) -> None:
    data = (images / "bird.bmp").read_bytes()

    def send(_: int) -> str:
        # On a slow or busy host, 24 at once may be more than a worker admits.
        return top1(post_until_admitted(f"{argos_url}/classify", data))

    with ThreadPoolExecutor(max_workers=24) as pool:
        labels = list(pool.map(send, range(48)))
    assert set(labels) == {"chickadee"}
    scrape = httpx.get(f"{argos_url}/metrics").text
    batches = {
        sample.name: sample.value
        for family in text_string_to_metric_families(scrape)
        if family.name == "argos_batch_size"
        for sample in family.samples
        if sample.name.endswith(("_sum", "_count"))
    }
    # Requests that arrive while the runner is busy run together in its next batch.
    assert batches["argos_batch_size_sum"] >= 48
    assert batches["argos_batch_size_count"] < batches["argos_batch_size_sum"]
