"""Locust scenarios for Argos: classification traffic, optional detection, bad input.

Configuration (environment variables, so that the file also works with plain ``locust``):

- ``ARGOS_LOADTEST_IMAGES``: folder of photos to send (default: ``$ARGOS_SHARED_DIR/images``,
  else ``../shared/images`` next to the repository).
- ``ARGOS_LOADTEST_DETECT``: ``1`` adds ``POST /detect`` requests (a small share).
- ``ARGOS_LOADTEST_API_KEY_FILE``: a file holding the key sent with every request, for a
  server that requires infer keys.

Every request is checked: images must get a 200 with predictions (or detections); bad
input must get a 4xx, and anything else is counted as a failure.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from locust import FastHttpUser, between, events, task
from locust.contrib.fasthttp import ResponseContextManager

from loadtests.config import auth_headers, detect_enabled, images_dir
from service.formats import MEDIA_TYPES

# Task weights: about 5 % bad input; detection, when enabled, about 3 %.
WEIGHT_MULTIPART, WEIGHT_RAW, WEIGHT_BAD, WEIGHT_DETECT = 60, 35, 5, 3


@dataclass(frozen=True)
class Photo:
    name: str
    data: bytes
    media_type: str


def load_photos(folder: Path) -> list[Photo]:
    """Every photo in ``folder`` whose suffix names a format Argos reads."""
    photos = [
        Photo(path.name, path.read_bytes(), MEDIA_TYPES[path.suffix.lower()])
        for path in sorted(folder.iterdir())
        if path.suffix.lower() in MEDIA_TYPES
    ]
    if not photos:
        raise FileNotFoundError(f"no photos in {folder}; set ARGOS_LOADTEST_IMAGES")
    return photos


PHOTOS: list[Photo] = []


@events.test_start.add_listener
def _load_photos(**_: object) -> None:
    PHOTOS[:] = load_photos(images_dir())


def expect_ok(response: ResponseContextManager, key: str) -> None:
    """A 200 whose JSON body has a list under ``key``; anything else is a failure."""
    if response.status_code != 200:
        response.failure(f"expected 200, got {response.status_code}: {response.text[:200]}")
        return
    try:
        body = response.json()
    except ValueError:
        response.failure("200 without a JSON body")
        return
    if not isinstance(body.get(key), list):
        response.failure(f"200 without {key!r} in the body")
    else:
        response.success()


def expect_client_error(response: ResponseContextManager, kind: str) -> None:
    """Bad input must be refused with a 4xx; a 2xx or a 5xx is a failure."""
    if 400 <= response.status_code < 500:
        response.success()
    else:
        response.failure(f"{kind}: got {response.status_code}, expected a 4xx")


class ArgosUser(FastHttpUser):
    """One client sending photos as a photo app would, with some broken requests."""

    wait_time = between(0.05, 0.25)
    default_headers = auth_headers()

    @task(WEIGHT_MULTIPART)
    def classify_multipart(self) -> None:
        photo = random.choice(PHOTOS)
        with self.client.post(
            "/classify",
            params=random_query(),
            files={"image": (photo.name, photo.data, photo.media_type)},
            name="/classify [multipart]",
            catch_response=True,
        ) as response:
            expect_ok(response, "predictions")

    @task(WEIGHT_RAW)
    def classify_raw(self) -> None:
        photo = random.choice(PHOTOS)
        with self.client.post(
            "/classify",
            params=random_query(),
            data=photo.data,
            headers={"Content-Type": photo.media_type},
            name="/classify [raw]",
            catch_response=True,
        ) as response:
            expect_ok(response, "predictions")

    @task(WEIGHT_BAD)
    def bad_input(self) -> None:
        kind, request = bad_request(random.choice(PHOTOS))
        with self.client.post(
            "/classify", name="/classify [bad input]", catch_response=True, **request
        ) as response:
            expect_client_error(response, kind)

    @task(WEIGHT_DETECT if detect_enabled() else 0)
    def detect(self) -> None:
        photo = random.choice(PHOTOS)
        with self.client.post(
            "/detect",
            files={"image": (photo.name, photo.data, photo.media_type)},
            name="/detect",
            catch_response=True,
        ) as response:
            expect_ok(response, "detections")


def random_query() -> dict[str, str]:
    return {"top_k": str(random.randint(1, 5)), "groups": random.choice(["true", "false"])}


def bad_request(photo: Photo) -> tuple[str, dict[str, Any]]:
    """One kind of bad request, by name, as keyword arguments for ``client.post``."""
    raw = {"data": photo.data, "headers": {"Content-Type": photo.media_type}}
    kinds: dict[str, dict[str, Any]] = {
        "empty body": {"data": b"", "headers": {"Content-Type": "image/jpeg"}},
        "not an image": {
            "data": b"this is not an image\n" * 50,
            "headers": {"Content-Type": "image/png"},
        },
        "wrong field": {"files": {"file": (photo.name, photo.data, photo.media_type)}},
        "bad top_k": raw | {"params": {"top_k": random.choice(["0", "-3", "many", "100000"])}},
        "text body": {"data": b"hello", "headers": {"Content-Type": "text/plain"}},
    }
    return random.choice(list(kinds.items()))
