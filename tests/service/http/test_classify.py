"""/classify and /model in-process: uploads, errors, parameters, admission and drain."""

from __future__ import annotations

import asyncio
import contextlib
import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from service.inference.model import ServedModel
from service.repository.registry import Registry
from tests.service.http.conftest import DENSE_MODEL, MakeClient


def png(colour: tuple[int, int, int], size: tuple[int, int] = (16, 16), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


def test_multipart_and_raw_body_give_the_same_answer(client: TestClient) -> None:
    data = png((250, 10, 10))
    multipart = client.post("/classify", files={"image": ("red.png", data, "image/png")})
    raw = client.post("/classify", content=data, headers={"Content-Type": "image/png"})
    assert multipart.status_code == raw.status_code == 200, multipart.text
    assert multipart.json()["predictions"] == raw.json()["predictions"]
    assert multipart.json()["predictions"][0]["label"] == "red"
    assert multipart.json()["model"] == {"name": "colours", "version": "1"}


def test_top_k_defaults_to_every_label_of_a_small_model_and_groups_on_request(
    client: TestClient,
) -> None:
    reply = client.post("/classify?groups=true", content=png((10, 10, 250)),
                        headers={"Content-Type": "image/png"})  # fmt: skip
    body = reply.json()
    assert [p["label"] for p in body["predictions"]][0] == "blue"
    assert len(body["predictions"]) == 3
    assert body["groups"] == [{"name": "warm", "score": body["predictions"][2]["score"]}]


@pytest.mark.parametrize(
    ("kwargs", "status", "error", "message"),
    [
        ({"content": b""}, 415, "unsupported_media_type", "has no Content-Type"),
        ({"content": b"", "headers": {"Content-Type": "image/png"}}, 400, "empty_body", "empty"),
        ({"content": b"x", "headers": {"Content-Type": "text/plain"}}, 415,
         "unsupported_media_type", "'text/plain' is not accepted"),
        ({"files": {"photo": ("a.png", b"x")}}, 400, "missing_image", "has no 'image' field"),
        ({"data": {"image": "text"}, "files": {"other": ("a", b"x")}}, 400, "missing_image",
         "text, not a file"),
        ({"content": b"not an image", "headers": {"Content-Type": "image/jpeg"}}, 422,
         "invalid_image", "not an image format"),
        ({"content": png((1, 2, 3))[:40], "headers": {"Content-Type": "image/png"}}, 422,
         "invalid_image", ""),
    ],
)  # fmt: skip
def test_bad_uploads_get_a_clear_4xx(
    client: TestClient, kwargs: dict, status: int, error: str, message: str
) -> None:
    reply = client.post("/classify", **kwargs)
    assert reply.status_code == status, reply.text
    assert reply.json()["error"] == error
    assert message in reply.json()["detail"]


def test_an_upload_over_the_byte_limit_is_413(make_client: MakeClient) -> None:
    client = make_client(max_upload_bytes=1000)
    reply = client.post("/classify", content=b"\0" * 5000, headers={"Content-Type": "image/png"})
    assert reply.status_code == 413
    assert "the limit is 1,000 bytes" in reply.json()["detail"]


def test_an_image_over_the_pixel_limit_is_413_before_decoding(make_client: MakeClient) -> None:
    client = make_client(max_image_pixels=100)
    reply = client.post("/classify", content=png((0, 0, 0), (20, 20)),
                        headers={"Content-Type": "image/png"})  # fmt: skip
    assert reply.status_code == 413
    assert "20x20 = 400 pixels; the limit is 100" in reply.json()["detail"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("top_k=0", "top_k: Input should be greater than or equal to 1"),
        ("top_k=4", "top_k must be at most 3, got 4"),
        ("top_k=five", "top_k: Input should be a valid integer"),
    ],
)
def test_bad_parameters_get_422(client: TestClient, query: str, message: str) -> None:
    reply = client.post(f"/classify?{query}", content=png((1, 1, 1)),
                        headers={"Content-Type": "image/png"})  # fmt: skip
    assert reply.status_code == 422
    assert reply.json()["error"] == "invalid_parameter"
    assert message in reply.json()["detail"]


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "I;16", "1"])
def test_every_mode_classifies(client: TestClient, mode: str) -> None:
    buffer = io.BytesIO()
    image = Image.new("RGB", (16, 16), (200, 30, 30)).convert(mode)
    image.save(buffer, format="TIFF" if mode == "CMYK" else "PNG")
    reply = client.post("/classify", files={"image": ("x", buffer.getvalue())})
    assert reply.status_code == 200, reply.text


def test_a_full_worker_refuses_with_503_and_retry_after_before_decoding(
    make_client: MakeClient,
) -> None:
    client = make_client(max_inflight=1)
    worker = client.app.state.worker
    with worker.admission.slot():  # another request holds the only place
        reply = client.post("/classify", content=b"ignored", headers={"Content-Type": "image/png"})
    assert reply.status_code == 503
    assert reply.headers["Retry-After"] == "1"
    assert reply.json()["error"] == "overloaded"
    assert "holds 1 of 1 images or jobs" in reply.json()["detail"]
    assert worker.admission.inflight == 0
    ok = client.post("/classify", content=png((9, 9, 9)), headers={"Content-Type": "image/png"})
    assert ok.status_code == 200


def test_a_draining_worker_refuses_new_requests_but_still_answers_probes_and_the_card(
    client: TestClient,
) -> None:
    client.app.state.worker.admission.draining = True
    reply = client.post("/classify", content=png((9, 9, 9)), headers={"Content-Type": "image/png"})
    assert reply.status_code == 503
    assert reply.json()["error"] == "shutting_down"
    assert int(reply.headers["Retry-After"]) >= 1
    assert client.get("/model").status_code == 200


def test_refusals_are_counted_in_the_metrics(make_client: MakeClient) -> None:
    client = make_client(max_inflight=1)
    before = rejections("overloaded")
    with client.app.state.worker.admission.slot():
        client.post("/classify", content=b"x", headers={"Content-Type": "image/png"})
    assert rejections("overloaded") == before + 1


def test_the_model_card_is_served(client: TestClient) -> None:
    card = client.get("/model").json()
    assert card["labels"] == ["red", "green", "blue"]
    assert card["preprocessing"]["input_size"] == [8, 8]


def rejections(code: str) -> float:
    """argos_rejected_requests_total for one error code, from this process's registry."""
    total = 0.0
    for family in text_string_to_metric_families(generate_latest(REGISTRY).decode()):
        for sample in family.samples:
            if sample.name == "argos_rejected_requests_total" and sample.labels["error"] == code:
                total += sample.value
    return total


def test_a_request_holds_no_place_while_its_body_arrives(make_client: MakeClient) -> None:
    """Admission comes once the body is in hand: a trickling upload costs no place."""
    client = make_client(max_inflight=1)
    admission = client.app.state.worker.admission
    seen_while_reading = []

    def body() -> Iterator[bytes]:
        data = png((9, 9, 9))
        for start in range(0, len(data), 16):
            seen_while_reading.append(admission.inflight)
            yield data[start : start + 16]

    reply = client.post("/classify", content=body(), headers={"Content-Type": "image/png"})
    assert reply.status_code == 200, reply.text
    assert len(seen_while_reading) > 1 and set(seen_while_reading) == {0}


def test_uploads_held_at_once_are_bounded_in_bytes(make_client: MakeClient) -> None:
    """Bodies are read before admission, so the bytes they hold have a budget of their own."""
    client = make_client(max_buffered_bytes=4096)
    budget = client.app.state.worker.uploads
    photo = {"content": png((9, 9, 9)), "headers": {"Content-Type": "image/png"}}
    with budget.lease() as other_upload:
        other_upload.take(budget.limit - 10)
        refused = client.post("/classify", **photo)
        big = client.post("/v2/models/colours/infer", content=b"{" + b" " * 100 + b"}")
    assert refused.status_code == big.status_code == 503
    assert "bytes of uploads" in refused.json()["detail"]
    assert refused.headers["Retry-After"]
    assert budget.held == 0
    assert client.post("/classify", **photo).status_code == 200
    assert budget.held == 0


class _LeaseCount:
    """Counts the model leases a worker's registry has open (the real leases are taken)."""

    def __init__(self, registry: Registry[ServedModel]) -> None:
        self.taken = self.open = 0
        self._lease = registry.lease

    @contextmanager
    def lease(self, *args: Any, **kwargs: Any) -> Iterator[ServedModel]:
        with self._lease(*args, **kwargs) as served:
            self.taken += 1
            self.open += 1
            try:
                yield served
            finally:
                self.open -= 1


UPLOAD_ROUTES = ["/classify", "/classify?explain=true", "/classify/render", "/detect"]
UPLOAD_ROUTES += ["/detect/render"]


@pytest.mark.parametrize("path", UPLOAD_ROUTES)
@pytest.mark.parametrize("outcome", ["answered", "bad image", "unexpected error"])
def test_every_way_out_of_an_upload_route_gives_the_model_and_the_bytes_back(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch, path: str, outcome: str
) -> None:
    # Uploads go to the threads (not the event loop), whose hand-off fails below.
    app = make_client(served={DENSE_MODEL: ["1"]}, inline_max_decoded_bytes=0).app
    worker = app.state.worker
    leases = _LeaseCount(worker.models)
    monkeypatch.setattr(worker.models, "lease", leases.lease)
    body = b"not an image" if outcome == "bad image" else png((200, 30, 30), (64, 64))
    if outcome == "unexpected error":

        async def fail(*args: object, **kwargs: object) -> None:
            raise RuntimeError("broken")

        monkeypatch.setattr(worker.pipeline, "in_thread", fail)
    client = TestClient(app, raise_server_exceptions=False)
    reply = client.post(path, content=body, headers={"Content-Type": "image/png"})
    expected = {"answered": 200, "bad image": 422, "unexpected error": 500}[outcome]
    assert reply.status_code == expected, reply.text
    assert (leases.taken, leases.open, worker.uploads.held) == (1, 0, 0)


def test_a_client_that_goes_away_gives_the_model_and_the_bytes_back(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_client(inline_max_decoded_bytes=0).app  # the threads' path, held below
    worker = app.state.worker
    leases = _LeaseCount(worker.models)
    monkeypatch.setattr(worker.models, "lease", leases.lease)

    async def scenario() -> tuple[int, int, int, int]:
        started = asyncio.Event()

        async def never(*args: object, **kwargs: object) -> None:
            started.set()
            await asyncio.Event().wait()

        monkeypatch.setattr(worker.pipeline, "in_thread", never)
        body = png((9, 9, 9))
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/classify",
            "raw_path": b"/classify",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"test"), (b"content-type", b"image/png")],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
        }

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop(0)
            await asyncio.Event().wait()
            return {}

        async def send(message: dict[str, Any]) -> None:
            pass

        request = asyncio.create_task(app(scope, receive, send))
        await started.wait()
        held_meanwhile = (leases.open, worker.uploads.held)
        request.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await request
        return *held_meanwhile, leases.open, worker.uploads.held

    open_meanwhile, bytes_meanwhile, open_after, bytes_after = asyncio.run(scenario())
    assert open_meanwhile == 1 and bytes_meanwhile > 0
    assert (open_after, bytes_after) == (0, 0)


def _threads_running(model: ServedModel, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the threads on which ``model``'s classifier graph runs from now on."""
    names: list[str] = []
    run_outputs = model.classifier.run_outputs

    def recorded(*args: Any, **kwargs: Any) -> Any:
        names.append(threading.current_thread().name)
        return run_outputs(*args, **kwargs)

    monkeypatch.setattr(model.classifier, "run_outputs", recorded)
    return names


@pytest.mark.parametrize(
    ("settings", "on_runner"),
    [
        ({}, False),
        ({"inline_max_decoded_bytes": 100}, True),
        ({"inline_max_decoded_bytes": 0}, True),
    ],
    ids=["small", "over the inline limit", "inline off"],
)
def test_a_lone_small_upload_on_an_idle_worker_runs_without_thread_hops(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch, settings: dict, on_runner: bool
) -> None:
    client = make_client(**settings)
    model = client.app.state.worker.models.get("colours")
    threads = _threads_running(model, monkeypatch)
    body = png((200, 30, 30))  # 16 x 16: 768 decoded bytes
    reply = client.post("/classify", content=body, headers={"Content-Type": "image/png"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["predictions"][0]["label"] == "red"
    assert [name.startswith("runner-") for name in threads] == [on_runner]


def test_a_request_among_others_in_progress_goes_the_threaded_way(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    admission = client.app.state.worker.admission
    model = client.app.state.worker.models.get("colours")
    threads = _threads_running(model, monkeypatch)
    seen: list[int] = []
    monkeypatch.setattr(model.runner, "run_here", lambda pixels: seen.append(admission.requests))
    admission.requests += 1  # another request's body is still arriving
    reply = client.post("/classify", content=png((9, 9, 9)), headers={"Content-Type": "image/png"})
    admission.requests -= 1
    assert reply.status_code == 200, reply.text
    assert seen == [] and [name.startswith("runner-") for name in threads] == [True]
    assert admission.requests == 0  # the middleware gave its count back


def test_a_bad_upload_tried_on_the_event_loop_gets_the_same_clear_4xx(
    make_client: MakeClient,
) -> None:
    for inline in (8 << 20, 0):
        client = make_client(inline_max_decoded_bytes=inline)
        body = png((1, 2, 3))[:40]
        reply = client.post("/classify", content=body, headers={"Content-Type": "image/png"})
        assert reply.status_code == 422, reply.text
        assert reply.json()["error"] == "invalid_image"
