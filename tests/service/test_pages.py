"""The page and the docs, in process: served from the package, nothing from other hosts."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from service.http.pages import STATIC, app_with_page_and_docs

# URLs in the page's files other than the SVG namespace name, which is never fetched.
OUTSIDE_URL = re.compile(r"(?:https?:)?//(?!www\.w3\.org/2000/svg)[\w.-]+")


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(app_with_page_and_docs(title="Argos"))


def test_the_page_and_its_files_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for name in ("app.js", "style.css"):
        assert f'"static/{name}"' in page.text
        assert client.get(f"/static/{name}").status_code == 200


@pytest.mark.parametrize("name", ["index.html", "app.js", "style.css"])
def test_the_page_names_no_other_host(name: str) -> None:
    assert OUTSIDE_URL.findall((STATIC / name).read_text()) == []


def test_swagger_ui_loads_its_assets_from_this_server(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
    assert {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"} <= set(assets)
    for asset in assets:
        assert asset.startswith("/docs/assets/"), asset
        assert client.get(asset).status_code == 200, asset


def test_the_page_and_docs_stay_out_of_the_openapi_document(client: TestClient) -> None:
    assert client.get("/redoc").status_code == 404, "ReDoc fetches its logo from the internet"
    assert client.get("/openapi.json").json().get("paths", {}) == {}
