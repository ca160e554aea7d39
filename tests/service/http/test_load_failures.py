"""A version that fails to load: the reply says why, and names no path of the server."""

from __future__ import annotations

import shutil
from pathlib import Path

from fastapi.testclient import TestClient

from service.card import ONNX_FILENAME
from service.http.app import create_app
from service.http.worker import Worker
from service.repository.desired_state import ControlDir
from service.repository.serving import serve_models
from service.settings import Settings
from tests.service.http.conftest import ADMIN_KEY, FolderStore


def test_a_failed_load_names_the_file_but_not_where_the_store_is(
    tiny_store: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    shutil.copytree(tiny_store / "colours" / "1", store / "colours" / "1")
    shutil.copytree(tiny_store / "colours" / "1", store / "colours" / "2")
    (store / "colours" / "2" / ONNX_FILENAME).unlink()
    settings = Settings(workers=1, inference_threads=1, admin_keys=[ADMIN_KEY])
    folders = FolderStore(store)
    controller = serve_models(
        settings, folders, ControlDir(tmp_path / "control"), {"colours": ["1"]}
    )
    try:
        worker = Worker(settings, folders, controller, ("colours",))
        client = TestClient(create_app(worker), headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        reply = client.post("/v2/repository/models/colours:2/load")
        assert reply.status_code == 400
        assert "colours:2 could not be loaded" in reply.text and ONNX_FILENAME in reply.text
        assert str(tmp_path) not in reply.text
        listed = client.post("/v2/repository/index", json={})
        assert str(tmp_path) not in listed.text
    finally:
        controller.stop()
