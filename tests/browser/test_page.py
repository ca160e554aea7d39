"""The page at ``/`` in Chromium: classify a photo, map why, find objects in it, read the
errors."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Locator, Page, Route, expect

from tests.conftest import argos_server

pytestmark = pytest.mark.integration
BO_PHOTO = "bo_1.jpg"


def open_page(page: Page, argos_url: str) -> None:
    page.goto(f"{argos_url}/")
    expect(page.locator("#model-name")).to_contain_text("labels")


def test_the_page_is_argos_and_loads_nothing_from_outside(
    page: Page, argos_url: str, outside_requests: list[str]
) -> None:
    loaded: list[str] = []
    page.on("requestfinished", lambda request: loaded.append(request.url))
    open_page(page, argos_url)
    expect(page).to_have_title("Argos")
    assert "BentoML" not in page.content()
    assert {f"{argos_url}/static/app.js", f"{argos_url}/static/style.css"} <= set(loaded)
    assert outside_requests == []


def test_a_chosen_photo_is_classified(page: Page, argos_url: str, images: Path) -> None:
    open_page(page, argos_url)
    page.set_input_files("#file", images / "cat.bmp")
    labels = page.locator("#predictions .label")
    expect(labels.first).to_have_text("Egyptian_cat")
    expect(labels).to_have_count(5)
    expect(page.locator("#groups .label").first).to_have_text("cat")
    expect(page.locator("#photo")).to_have_js_property("complete", True)
    expect(page.locator("#timing")).to_contain_text("inference")
    expect(page.locator("#error")).to_be_hidden()


def test_a_trained_model_says_when_a_photo_is_unlike_its_training_images(
    page: Page, doggy_door_url: str, images: Path, shared_dir: Path
) -> None:
    open_page(page, doggy_door_url)
    page.set_input_files("#file", images / "sunflower.bmp")
    expect(page.locator("#familiarity")).to_have_class("unknown")
    expect(page.locator("#familiarity")).to_contain_text("Unknown: unlike anything")
    page.set_input_files("#file", shared_dir / "data" / "doggy_door" / "bo" / BO_PHOTO)
    expect(page.locator("#familiarity")).to_have_class("muted")
    expect(page.locator("#familiarity")).to_contain_text("looks like the model's training")


def test_the_imagenet_model_says_nothing_about_familiarity(
    page: Page, argos_url: str, images: Path
) -> None:
    open_page(page, argos_url)
    page.set_input_files("#file", images / "parrot.jpg")
    expect(page.locator("#predictions .label").first).to_have_text("macaw")
    expect(page.locator("#familiarity")).to_be_hidden()


def test_find_objects_draws_a_box_over_each_dog(page: Page, argos_url: str, images: Path) -> None:
    open_page(page, argos_url)
    page.set_input_files("#file", images / "pets.jpg")
    expect(page.locator("#predictions li")).to_have_count(5)
    page.click("#detect")
    boxes = page.locator("#boxes rect")
    expect(boxes).to_have_count(2)
    expect(page.locator("#boxes text").first).to_contain_text("dog")
    assert page.locator("#boxes").get_attribute("viewBox") == "0 0 512 430"
    for box in boxes.all():
        x, width = float(box.get_attribute("x")), float(box.get_attribute("width"))
        assert x >= 0 and x + width <= 512 and width >= 100
    photo, overlay = page.locator("#photo").bounding_box(), page.locator("#boxes").bounding_box()
    assert photo == overlay, "the boxes are drawn over the photo, at its size"
    heatmap = page.wait_for_function("document.getElementById('heatmap').naturalWidth || false")
    assert heatmap.json_value() > 512, "the rendering puts the heatmap beside the photo"


def screenshot(locator: Locator) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(locator.screenshot())).convert("RGB")).astype(int)


def test_explain_overlays_the_map_on_the_photo(page: Page, argos_url: str, images: Path) -> None:
    open_page(page, argos_url)
    page.set_input_files("#file", images / "pets.jpg")
    expect(page.locator("#predictions li")).to_have_count(5)
    expect(page.locator("#photo")).to_have_js_property("complete", True)
    before = screenshot(page.locator("#photo-frame"))
    with page.expect_response(lambda reply: "explain=true" in reply.url) as answered:
        page.check("#explain")
    explanation = answered.value.json()["explanation"]
    cam = page.locator("#cam")
    expect(cam).to_have_attribute("title", re.compile(explanation["label"]))
    expect(page.locator("body")).not_to_have_class(re.compile("busy"))
    expect(page.locator("#explain-note")).to_contain_text(explanation["label"])
    assert (cam.get_attribute("width"), cam.get_attribute("height")) == ("7", "7")

    photo, drawn = page.locator("#photo").bounding_box(), cam.bounding_box()
    scale = photo["width"] / 512
    x0, y0, x1, y1 = (round(value * scale) for value in explanation["box"])
    placed = (drawn["x"] - photo["x"], drawn["y"] - photo["y"], drawn["width"], drawn["height"])
    assert placed == pytest.approx((x0, y0, x1 - x0, y1 - y0), abs=1.5), "on the box"
    changed = np.abs(screenshot(page.locator("#photo-frame")) - before).sum(axis=2) > 10
    assert changed[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2].mean() > 0.9, "the map is drawn on it"
    assert not changed[:, : x0 - 2].any() and not changed[:, x1 + 2 :].any(), "and only there"


def test_a_file_that_is_no_image_gets_the_servers_message(page: Page, argos_url: str) -> None:
    open_page(page, argos_url)
    notes = {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"shopping list"}
    page.set_input_files("#file", files=[notes])
    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("422 invalid_image")
    expect(error).to_contain_text("is not an image format Argos can read")
    expect(page.locator("#result")).to_be_hidden()


def test_a_bad_top_k_gets_the_servers_message(page: Page, argos_url: str, images: Path) -> None:
    open_page(page, argos_url)
    page.fill("#top-k", "5000")
    page.set_input_files("#file", images / "cat.bmp")
    expect(page.locator("#error")).to_contain_text("422 invalid_parameter: top_k must be at most")


PAGE_KEY = "infer-key-typed-into-the-page"


@pytest.fixture(scope="module")
def keyed_url(default_model: str) -> Iterator[str]:
    """A server whose inference needs a key."""
    with argos_server(default_model, infer_keys=PAGE_KEY) as url:
        yield url


def test_a_server_with_keys_asks_for_one_and_the_tab_keeps_it(
    page: Page, keyed_url: str, images: Path
) -> None:
    page.goto(f"{keyed_url}/")
    expect(page.locator("#key-form")).to_be_visible()
    page.set_input_files("#file", images / "cat.bmp")
    expect(page.locator("#key-message")).to_have_text("This server needs an API key.")
    page.fill("#key", "a-wrong-key")
    page.click("#key-form button")
    expect(page.locator("#key-message")).to_contain_text("refused")
    page.fill("#key", PAGE_KEY)
    page.click("#key-form button")
    expect(page.locator("#predictions .label").first).to_have_text("Egyptian_cat")
    expect(page.locator("#model-name")).to_contain_text("1000 labels")
    expect(page.locator("#key-form")).to_be_hidden()
    stored = page.evaluate("[sessionStorage.getItem('argos-api-key'), localStorage.length]")
    assert stored == [PAGE_KEY, 0]


def test_a_late_refusal_of_a_replaced_key_changes_nothing(
    page: Page, keyed_url: str, images: Path
) -> None:
    """The refusal of a wrong key's classification, arriving after the right key's answer,
    neither asks for a key again nor hides the answer."""
    held: list[Route] = []

    def hold_the_wrong_keys_classification(route: Route) -> None:
        if route.request.headers.get("authorization") == "Bearer a-wrong-key":
            held.append(route)
        else:
            route.continue_()

    page.route(re.compile(r"/classify\?"), hold_the_wrong_keys_classification)
    page.goto(f"{keyed_url}/")
    page.set_input_files("#file", images / "cat.bmp")
    expect(page.locator("#key-message")).to_have_text("This server needs an API key.")
    page.fill("#key", "a-wrong-key")
    page.click("#key-form button")
    expect(page.locator("#key-message")).to_contain_text("refused")  # from /models
    page.fill("#key", PAGE_KEY)
    page.click("#key-form button")
    expect(page.locator("#predictions .label").first).to_have_text("Egyptian_cat")
    assert len(held) == 1
    with page.expect_response(lambda reply: reply.status == 401):
        held[0].continue_()
    expect(page.locator("#key-form")).to_be_hidden()
    expect(page.locator("#error")).to_be_hidden()
    expect(page.locator("#predictions .label").first).to_have_text("Egyptian_cat")
