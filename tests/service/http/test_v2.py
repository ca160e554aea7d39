"""The Open Inference Protocol in-process, with bodies built and read by ``tritonclient``."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import tritonclient.http as triton
from fastapi.testclient import TestClient

from tests.service.http.conftest import MakeClient
from tests.service.http.test_classify import _threads_running, png

RED, GREEN = png((250, 10, 10)), png((10, 250, 10))


def binary_request(
    images: list[bytes], outputs: list[triton.InferRequestedOutput] | None = None, **kwargs
) -> dict:
    """What ``tritonclient`` sends by default: the JSON object, then the images' bytes."""
    tensor = triton.InferInput("image", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=np.object_))
    body, json_size = triton.InferenceServerClient.generate_request_body(
        [tensor], outputs=outputs, **kwargs
    )
    headers = {} if json_size is None else {"Inference-Header-Content-Length": str(json_size)}
    return {"content": body, "headers": headers}


def json_request(images: list[bytes], **fields) -> dict:
    data = [base64.b64encode(image).decode() for image in images]
    tensor = {"name": "image", "shape": [len(images)], "datatype": "BYTES", "data": data}
    return {"content": json.dumps({"inputs": [tensor], **fields})}


def result(reply) -> triton.InferResult:
    assert reply.status_code == 200, reply.text
    length = reply.headers.get("Inference-Header-Content-Length")
    return triton.InferenceServerClient.parse_response_body(
        reply.content, header_length=None if length is None else int(length)
    )


def test_health_and_server_metadata(client: TestClient) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").status_code == 200
    metadata = client.get("/v2").json()
    assert metadata["name"] == "argos"
    assert set(metadata["extensions"]) >= {"binary_tensor_data", "classification"}


def test_a_draining_worker_is_not_ready(client: TestClient) -> None:
    client.app.state.worker.admission.draining = True
    reply = client.get("/v2/health/ready")
    assert (reply.status_code, reply.json()) == (503, {"ready": False})


def test_model_metadata_describes_images_in_and_probabilities_out(
    make_client: MakeClient,
) -> None:
    client = make_client({"colours": ["1", "2"]})
    for path in ("/v2/models/colours", "/v2/models/colours/versions/1"):
        metadata = client.get(path).json()
        assert metadata["name"] == "colours"
        assert metadata["versions"] == ["1", "2"]
        assert metadata["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
        assert metadata["outputs"] == [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}
        ]
    config = client.get("/v2/models/colours/versions/2/config").json()
    assert config["input"] == [{"name": "image", "data_type": "TYPE_STRING", "dims": [-1]}]
    assert config["output"] == [
        {"name": "probabilities", "data_type": "TYPE_FP32", "dims": [-1, 3]}
    ]
    assert client.get("/v2/models/colours/ready").json() == {"name": "colours", "ready": True}
    assert client.get("/v2/models/colours/versions/2/ready").status_code == 200


@pytest.mark.parametrize(
    "path",
    ["/v2/models/pets", "/v2/models/pets/ready", "/v2/models/colours/versions/9",
     "/v2/models/colours/versions/9/ready", "/v2/models/colours/stats"],
)  # fmt: skip
def test_unknown_models_versions_and_endpoints_are_404_in_the_protocol_shape(
    client: TestClient, path: str
) -> None:
    reply = client.get(path)
    assert reply.status_code == 404
    assert list(reply.json()) == ["error"]


def test_binary_inference_matches_classify_image_for_image(client: TestClient) -> None:
    reply = client.post("/v2/models/colours/infer", **binary_request([RED, GREEN], request_id="7"))
    assert reply.headers["X-Argos-Model"] == "colours:1"
    answer = result(reply)
    probabilities = answer.as_numpy("probabilities")
    assert probabilities.dtype == np.float32 and probabilities.shape == (2, 3)
    assert answer.get_response()["model_name"] == "colours"
    assert answer.get_response()["model_version"] == "1"
    assert answer.get_response()["id"] == "7"
    for image, row in zip([RED, GREEN], probabilities, strict=True):
        reply = client.post("/classify", content=image, headers={"Content-Type": "image/png"})
        scores = {p["index"]: p["score"] for p in reply.json()["predictions"]}
        assert [scores[i] for i in range(3)] == pytest.approx(row.tolist(), abs=1e-6)


def test_json_inference_and_classification_strings(client: TestClient) -> None:
    request = json_request(
        [GREEN], outputs=[{"name": "probabilities", "parameters": {"classification": 2}}]
    )
    reply = client.post("/v2/models/colours/versions/1/infer", **request)
    assert reply.headers["content-type"] == "application/json"
    (output,) = reply.json()["outputs"]
    assert (output["datatype"], output["shape"]) == ("BYTES", [1, 2])
    best, second = output["data"]
    score, index, label = best.split(":")
    assert (index, label) == ("1", "green")
    assert float(score) > float(second.split(":")[0])


def test_tritonclient_classification_output_in_binary(client: TestClient) -> None:
    outputs = [triton.InferRequestedOutput("probabilities", class_count=3)]
    answer = result(client.post("/v2/models/colours/infer", **binary_request([RED], outputs)))
    labels = [element.decode().split(":")[2] for element in answer.as_numpy("probabilities")[0]]
    assert labels[0] == "red" and sorted(labels) == ["blue", "green", "red"]


@pytest.mark.parametrize(
    ("settings", "on_runner"),
    [({}, False), ({"inline_max_decoded_bytes": 0}, True)],
    ids=["small", "inline off"],
)
def test_a_lone_small_image_on_an_idle_worker_runs_without_thread_hops(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch, settings: dict, on_runner: bool
) -> None:
    client = make_client(**settings)
    threads = _threads_running(client.app.state.worker.models.get("colours"), monkeypatch)
    answer = result(client.post("/v2/models/colours/infer", **binary_request([RED])))
    assert int(answer.as_numpy("probabilities")[0].argmax()) == 0
    assert [name.startswith("runner-") for name in threads] == [on_runner]


@pytest.mark.parametrize(
    ("request_", "status", "message"),
    [
        (binary_request([RED, b"not an image"]), 400, "image 1 of input 'image'"),
        (binary_request([RED, png((1, 2, 3))[:40]]), 400, "image 1 of input 'image'"),
        (binary_request([png((1, 2, 3))[:40]]), 400, "image 0 of input 'image'"),
        (json_request([RED]) | {"content": b"{"}, 400, "not valid"),
        ({"content": json.dumps({"inputs": [{"name": "pixels", "shape": [1],
          "datatype": "BYTES", "data": ["AA=="]}]})}, 400, "one input, 'image'"),
        (json_request([b"\x89PNG"] * 9), 400, "at most 8"),
    ],
)  # fmt: skip
def test_bad_tensors_and_images_are_400(
    client: TestClient, request_: dict, status: int, message: str
) -> None:
    reply = client.post("/v2/models/colours/infer", **request_)
    assert reply.status_code == status
    assert message in reply.json()["error"]


def test_inference_on_an_unknown_model_or_version_is_404(client: TestClient) -> None:
    for path in ("/v2/models/pets/infer", "/v2/models/colours/versions/9/infer"):
        reply = client.post(path, **binary_request([RED]))
        assert reply.status_code == 404
        assert "colours" in reply.json()["error"]


def test_the_v2_path_has_the_same_size_ceilings_as_classify(make_client: MakeClient) -> None:
    client = make_client(max_upload_bytes=1000, max_image_pixels=100)
    big = client.post("/v2/models/colours/infer", **binary_request([b"x" * 70_000]))
    assert big.status_code == 413
    assert "limit" in big.json()["error"]
    many_pixels = client.post(
        "/v2/models/colours/infer", **binary_request([png((1, 2, 3), (20, 20))])
    )
    assert many_pixels.status_code == 413
    assert "400 pixels" in many_pixels.json()["error"]


def test_a_full_worker_answers_503_with_retry_after(make_client: MakeClient) -> None:
    client = make_client(max_inflight=1)
    with client.app.state.worker.admission.slot():
        reply = client.post("/v2/models/colours/infer", **binary_request([RED]))
    assert reply.status_code == 503
    assert reply.headers["Retry-After"] == "1"
    assert list(reply.json()) == ["error"]


def test_a_request_of_several_images_takes_a_place_per_image(make_client: MakeClient) -> None:
    client = make_client(max_inflight=3)
    admission = client.app.state.worker.admission
    with admission.slot(2):  # two images of other requests are in the worker
        refused = client.post("/v2/models/colours/infer", **binary_request([RED, RED]))
        alone = client.post("/v2/models/colours/infer", **binary_request([RED]))
    assert refused.status_code == 503, refused.text
    assert "needs 2" in refused.json()["error"]
    assert alone.status_code == 200, alone.text
    assert admission.inflight == 0
    both = client.post("/v2/models/colours/infer", **binary_request([RED, RED]))
    assert both.status_code == 200, both.text


def test_repository_index_load_and_unload(make_client: MakeClient) -> None:
    client = make_client({"colours": ["1"]})
    index = {
        (m["name"], m["version"]): m["state"] for m in client.post("/v2/repository/index").json()
    }
    assert index == {("colours", "1"): "READY", ("colours", "2"): "UNAVAILABLE",
                     ("greys", "1"): "UNAVAILABLE", ("shades", "1"): "UNAVAILABLE"}  # fmt: skip
    assert client.post("/v2/repository/models/shades/load", content=b"{}").status_code == 200
    ready = client.post("/v2/repository/index", json={"ready": True}).json()
    assert {(m["name"], m["version"]) for m in ready} == {("colours", "1"), ("shades", "1")}
    unload = client.post(
        "/v2/repository/models/shades/unload",
        json={"parameters": {"unload_dependents": False}},
    )
    assert unload.status_code == 200
    assert client.get("/v2/models/shades/ready").status_code == 404


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v2/repository/models/pets/load", b"", 404, "no 'pets:latest'"),
        ("/v2/repository/models/colours:9/load", b"", 404, "no 'colours:9'"),
        ("/v2/repository/models/colours/load", b'{"parameters": {"config": "{}"}}', 400,
         "takes no ['config']"),
        ("/v2/repository/models/colours:1/load", b'{"parameters": {"version": "2"}}', 400,
         "the path asks for version '1'"),
        ("/v2/repository/models/pets/unload", b"", 404, "pets is not loaded"),
        ("/v2/repository/models/colours:2/unload", b"", 404, "colours:2 is not loaded"),
        ("/v2/repository/index", b"[]", 400, "not"),
    ],
)  # fmt: skip
def test_bad_repository_requests(
    client: TestClient, path: str, body: bytes, status: int, message: str
) -> None:
    reply = client.post(path, content=body)
    assert reply.status_code == status, reply.text
    assert message in reply.json()["error"]


def test_admission_refuses_what_the_worker_could_not_run_in_time(make_client: MakeClient) -> None:
    client = make_client(queue_timeout_ms=1000)  # admits 800 ms of expected work
    worker = client.app.state.worker
    runner = worker.models.get("colours").runner
    runner.seconds_per_item = 0.3  # as measured on a slow machine
    with worker.admission.slot(1, work_s=0.5):  # another request's work
        refused = client.post("/v2/models/colours/infer", **binary_request([RED, RED]))
        admitted = client.post("/v2/models/colours/infer", **binary_request([RED]))
    assert refused.status_code == 503 and "ms of work" in refused.json()["error"]
    assert refused.headers["Retry-After"]
    assert admitted.status_code == 200, admitted.text
