"""Stock ``tritonclient.grpc`` against a real two-worker server with keys: the answers of
``/classify``, model control, every refusal with its status, shared admission and drain."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import numpy as np
import psutil
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc
from tritonclient.utils import InferenceServerException

from harness.local_server import LocalServer, free_port, local_server
from service.grpc.errors import RETRY_AFTER
from service.settings import DEFAULT_MODEL
from tests.integration.test_drain import _wait_until_admitted

pytestmark = pytest.mark.integration

INFER_KEY, ADMIN_KEY = "grpc-infer-key", "grpc-admin-key"
TIMEOUT_S = 60
REFUSED_WITHIN_S = 5.0
"""A refusal is answered before any decoding; the bound leaves room for a busy machine."""


@dataclass(frozen=True)
class Served:
    http: LocalServer
    grpc_url: str

    def client(self) -> triton.InferenceServerClient:
        return triton.InferenceServerClient(self.grpc_url)

    def stub(self) -> service_pb2_grpc.GRPCInferenceServiceStub:
        return service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(self.grpc_url))


def bearer(key: str = INFER_KEY) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def serve(model: str, log: Path | None = None, **settings: str) -> Iterator[Served]:
    port = free_port()
    env = {
        "ARGOS_MODEL": model,
        "ARGOS_WORKERS": "2",
        "ARGOS_GRPC_PORT": str(port),
        "ARGOS_GRPC_HOST": "127.0.0.1",
        "ARGOS_INFER_KEYS": INFER_KEY,
        "ARGOS_ADMIN_KEYS": ADMIN_KEY,
    } | {f"ARGOS_{key.upper()}": value for key, value in settings.items()}
    with local_server(env, quiet=log is None, log=log) as server:
        yield Served(server, f"127.0.0.1:{port}")


@pytest.fixture(scope="module")
def served(default_model: str) -> Iterator[Served]:
    """Few places per worker, so that a burst overloads it."""
    yield from serve(default_model, max_inflight="4", queue_timeout_ms="2000")


def image_input(images: list[bytes]) -> triton.InferInput:
    tensor = triton.InferInput("image", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=np.object_))
    return tensor


def infer_request(images: list[bytes], model: str = DEFAULT_MODEL) -> pb.ModelInferRequest:
    tensor = image_input(images)
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.extend([tensor._get_tensor()])
    request.raw_input_contents.extend([tensor._get_content()])
    return request


def status_of(call, *args, **kwargs) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        call(*args, **kwargs)
    return caught.value


def test_metadata_and_two_images_as_classify_answers_them(served: Served, images: Path) -> None:
    client = served.client()
    assert client.is_server_live() and client.is_server_ready()
    metadata = client.get_model_metadata(DEFAULT_MODEL, headers=bearer(), as_json=True)
    assert metadata["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": ["-1"]}]
    photos = [(images / name).read_bytes() for name in ("cat_720p.jpg", "parrot.jpg")]
    result = client.infer(
        DEFAULT_MODEL, [image_input(photos)], headers=bearer(), client_timeout=TIMEOUT_S
    )
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (2, 1000)
    with httpx.Client(base_url=served.http.url, headers=bearer(), timeout=TIMEOUT_S) as http:
        labels = http.get("/model").json()["labels"]
        for photo, row in zip(photos, probabilities, strict=True):
            reply = http.post("/classify?top_k=5", content=photo,
                              headers={"Content-Type": "image/jpeg"})  # fmt: skip
            assert reply.status_code == 200, reply.text
            for prediction in reply.json()["predictions"]:
                assert abs(row[labels.index(prediction["label"])] - prediction["score"]) <= 1e-6
    top = [triton.InferRequestedOutput("probabilities", class_count=3)]
    strings = client.infer(
        DEFAULT_MODEL, [image_input(photos)], outputs=top, headers=bearer()
    ).as_numpy("probabilities")
    assert strings.shape == (2, 3)
    assert strings[1, 0].decode().endswith(":macaw")


def test_model_control_with_the_admin_key(served: Served, doggy_door_model: str) -> None:
    client, admin = served.client(), bearer(ADMIN_KEY)
    name = doggy_door_model.split(":")[0]
    refused = status_of(client.load_model, name, headers=bearer())
    assert refused.status() == "StatusCode.PERMISSION_DENIED"
    client.load_model(name, headers=admin, client_timeout=TIMEOUT_S)
    try:
        index = client.get_model_repository_index(headers=admin, as_json=True)["models"]
        assert any(m["name"] == name and m.get("state") == "READY" for m in index)
        assert client.is_model_ready(name, headers=bearer())
    finally:
        client.unload_model(name, headers=admin, client_timeout=TIMEOUT_S)
    assert not client.is_model_ready(name, headers=bearer())


def test_refusals_carry_their_status(served: Served, images: Path) -> None:
    client = served.client()
    photo = image_input([(images / "cat_720p.jpg").read_bytes()])
    cases = [
        ((DEFAULT_MODEL, [photo]), {}, "StatusCode.UNAUTHENTICATED"),
        ((DEFAULT_MODEL, [photo]), bearer("wrong"), "StatusCode.UNAUTHENTICATED"),
        (("nope", [photo]), bearer(), "StatusCode.NOT_FOUND"),
        (
            (DEFAULT_MODEL, [image_input([b"not an image"])]),
            bearer(),
            "StatusCode.INVALID_ARGUMENT",
        ),
        ((DEFAULT_MODEL, [image_input([b"x"] * 9)]), bearer(), "StatusCode.INVALID_ARGUMENT"),
    ]
    for args, headers, status in cases:
        assert status_of(client.infer, *args, headers=headers).status() == status
    huge = infer_request([b"\0" * (21 * 1024 * 1024)])
    with pytest.raises(grpc.RpcError) as caught:
        served.stub().ModelInfer(huge, metadata=tuple(bearer().items()), timeout=TIMEOUT_S)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    unimplemented = status_of(client.get_inference_statistics, headers=bearer())
    assert unimplemented.status() == "StatusCode.UNIMPLEMENTED"


def test_an_overloaded_server_refuses_grpc_fast_alongside_http(
    served: Served, images: Path
) -> None:
    """Bursts over both protocols share each worker's places: gRPC calls beyond them end
    UNAVAILABLE with a retry delay, none past its deadline."""
    photo = (images / "cat_720p.jpg").read_bytes()
    deadline_s = 20.0
    codes: list[tuple[grpc.StatusCode, dict, float]] = []
    http_statuses: list[int] = []

    def call_grpc(stub: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
        started = time.monotonic()
        try:
            stub.ModelInfer(infer_request([photo, photo]), metadata=tuple(bearer().items()),
                            timeout=deadline_s)  # fmt: skip
            codes.append((grpc.StatusCode.OK, {}, time.monotonic() - started))
        except grpc.RpcError as error:
            trailing = dict(error.trailing_metadata() or ())
            codes.append((error.code(), trailing, time.monotonic() - started))

    def call_http() -> None:
        with httpx.Client(base_url=served.http.url, headers=bearer(), timeout=deadline_s) as http:
            reply = http.post("/classify", content=photo, headers={"Content-Type": "image/jpeg"})
            http_statuses.append(reply.status_code)

    stubs = [served.stub() for _ in range(8)]
    with ThreadPoolExecutor(48) as pool:
        for index in range(48):
            pool.submit(call_grpc, stubs[index % len(stubs)])
            pool.submit(call_http)
    assert len(codes) == 48 and len(http_statuses) == 48
    refused = [c for c in codes if c[0] == grpc.StatusCode.UNAVAILABLE]
    assert refused, "no gRPC call was refused"
    assert all(code in (grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE) for code, _, _ in codes)
    assert all(RETRY_AFTER in trailing for _, trailing, _ in refused)
    assert max(seconds for _, _, seconds in codes) < deadline_s
    assert max(seconds for _, _, seconds in refused) < REFUSED_WITHIN_S
    assert set(http_statuses) <= {200, 503}


def test_sigterm_answers_every_accepted_grpc_call(
    default_model: str, images: Path, tmp_path: Path
) -> None:
    calls = 24
    photo = (images / "cat_720p.jpg").read_bytes()
    log = tmp_path / "server.log"
    contexts = serve(default_model, log, max_inflight="200", queue_timeout_ms="120000")
    served = next(contexts)
    try:
        stubs = [served.stub() for _ in range(6)]
        futures = [
            stubs[i % len(stubs)].ModelInfer.future(
                infer_request([photo]), metadata=tuple(bearer().items()), timeout=120
            )
            for i in range(calls)
        ]
        _wait_until_admitted(served.http.url, calls)
        os.killpg(served.http.pid, signal.SIGTERM)
        terminated = time.monotonic()
        try:
            replies = [future.exception(timeout=90) or future.result() for future in futures]
        except grpc.FutureTimeoutError:
            tail = log.read_text()[-6000:]
            pytest.fail(f"a call was not answered in 90 s; the end of the server's log:\n{tail}")
        psutil.Process(served.http.pid).wait(timeout=max(1.0, terminated + 60 - time.monotonic()))
    finally:
        contexts.close()
    failed = [reply for reply in replies if isinstance(reply, grpc.RpcError)]
    assert not failed, [(f.code(), f.details()) for f in failed[:3]]
    assert all(len(reply.raw_output_contents[0]) == 1000 * 4 for reply in replies)
