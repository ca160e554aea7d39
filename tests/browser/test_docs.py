"""``/docs`` in Chromium without internet: Swagger UI lists the routes and sends a photo."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.integration


def test_docs_list_every_route(page: Page, argos_url: str) -> None:
    page.goto(f"{argos_url}/docs")
    paths = page.locator(".opblock-summary-path")
    expect(paths.first).to_be_visible()
    assert {"/classify", "/detect", "/detect/render", "/model"} <= set(paths.all_inner_texts())


def test_try_it_out_sends_a_photo(page: Page, argos_url: str, images: Path) -> None:
    page.goto(f"{argos_url}/docs")
    path = page.locator(".opblock-summary-path", has_text=re.compile(r"^/classify$"))
    operation = page.locator(".opblock.opblock-post", has=path)
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.locator("input[type=file]").set_input_files(images / "cat.bmp")
    operation.get_by_role("button", name="Execute").click()
    reply = operation.locator(".live-responses-table .response .highlight-code")
    expect(reply).to_contain_text('"label": "Egyptian_cat"')
