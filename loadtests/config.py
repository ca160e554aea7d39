"""Settings shared by the locustfile and the runner, read from the environment.

Kept apart from the locustfile because importing Locust monkey-patches the process
with gevent, which the runner and the tests must not do.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.local_server import shared_dir

IMAGES_ENV = "ARGOS_LOADTEST_IMAGES"
DETECT_ENV = "ARGOS_LOADTEST_DETECT"
API_KEY_FILE_ENV = "ARGOS_LOADTEST_API_KEY_FILE"


def images_dir() -> Path:
    """``$ARGOS_LOADTEST_IMAGES``, else ``$ARGOS_SHARED_DIR/images``, else ``../shared/images``."""
    if folder := os.environ.get(IMAGES_ENV):
        return Path(folder)
    return shared_dir() / "images"


def detect_enabled() -> bool:
    return os.environ.get(DETECT_ENV, "").lower() in {"1", "true", "yes"}


def auth_headers() -> dict[str, str] | None:
    """``Authorization: Bearer`` with the key in ``$ARGOS_LOADTEST_API_KEY_FILE``, if set."""
    if path := os.environ.get(API_KEY_FILE_ENV):
        return {"Authorization": f"Bearer {Path(path).read_text().strip()}"}
    return None
