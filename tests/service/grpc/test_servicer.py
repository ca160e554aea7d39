"""``inference.GRPCInferenceService`` in-process, called with stock ``tritonclient.grpc``:
the same answers, limits, keys and messages as the REST routes at ``/v2``."""

from __future__ import annotations

import asyncio
import time

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from google.protobuf.message_factory import GetMessageClass
from tritonclient.grpc import service_pb2 as pb
from tritonclient.utils import InferenceServerException

from service.grpc.errors import RETRY_AFTER
from service.grpc.server import GRPCServer
from service.http.v2.codec import classification_strings
from tests.service.grpc.conftest import INFER_KEY, Endpoint, MakeEndpoint
from tests.service.http.conftest import ADMIN_KEY, MakeClient
from tests.service.http.test_classify import _threads_running, png
from tests.service.http.test_v2 import binary_request

RED, GREEN = png((250, 10, 10)), png((10, 250, 10))
TIMEOUT_S = 10


def image_input(images: list[bytes]) -> triton.InferInput:
    tensor = triton.InferInput("image", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=np.object_))
    return tensor


def infer(endpoint: Endpoint, images: list[bytes], **kwargs) -> triton.InferResult:
    return endpoint.client().infer(
        kwargs.pop("model_name", "colours"),
        [image_input(images)],
        headers=endpoint.headers(),
        client_timeout=TIMEOUT_S,
        **kwargs,
    )


def failure(call, *args, **kwargs) -> grpc.RpcError:
    """The error a raw stub call ends with."""
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, timeout=TIMEOUT_S, **kwargs)
    return caught.value


def infer_request(images: list[bytes], model: str = "colours") -> pb.ModelInferRequest:
    """What ``tritonclient.grpc`` sends: the images length-prefixed in raw_input_contents."""
    tensor = image_input(images)
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.extend([tensor._get_tensor()])
    request.raw_input_contents.extend([tensor._get_content()])
    return request


def keyed(key: str = INFER_KEY) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


def test_health_is_public_and_metadata_describes_images_in_and_probabilities_out(
    make_endpoint: MakeEndpoint,
) -> None:
    endpoint = make_endpoint({"colours": ["1", "2"]})
    client = endpoint.client()
    assert client.is_server_live() and client.is_server_ready()
    headers = endpoint.headers()
    assert client.get_server_metadata(headers=headers).name == "argos"
    metadata = client.get_model_metadata("colours", headers=headers, as_json=True)
    assert metadata["versions"] == ["1", "2"]
    assert metadata["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": ["-1"]}]
    assert metadata["outputs"] == [
        {"name": "probabilities", "datatype": "FP32", "shape": ["-1", "3"]}
    ]
    config = client.get_model_config("colours", "2", headers=headers, as_json=True)["config"]
    assert config["input"] == [{"name": "image", "data_type": "TYPE_STRING", "dims": ["-1"]}]
    assert client.is_model_ready("colours", "2", headers=headers)
    assert not client.is_model_ready("colours", "9", headers=headers)


def test_two_images_in_one_call_get_the_probabilities_of_the_inference_path(
    endpoint: Endpoint,
) -> None:
    result = infer(endpoint, [RED, GREEN])
    probabilities = result.as_numpy("probabilities")
    worker = endpoint.worker

    async def direct():
        model = worker.models.get("colours")
        return (await worker.pipeline.classify(model, [RED, GREEN], endpoint="test")).probabilities

    expected = endpoint.on_loop(direct).result(timeout=TIMEOUT_S)
    assert probabilities.shape == (2, 3)
    np.testing.assert_allclose(probabilities, expected, atol=1e-6)
    assert [int(row.argmax()) for row in probabilities] == [0, 1]
    response = result.get_response()
    assert (response.model_name, response.model_version) == ("colours", "1")


def test_a_lone_call_runs_on_the_runner_not_the_event_loop(
    endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gRPC calls are not counted among the HTTP requests in progress, so none takes the
    event loop for its inference: under load they would run one by one."""
    threads = _threads_running(endpoint.worker.models.get("colours"), monkeypatch)
    infer(endpoint, [RED])
    assert [name.startswith("runner-") for name in threads] == [True]


def test_images_in_bytes_contents_are_read_as_well(endpoint: Endpoint) -> None:
    request = pb.ModelInferRequest(model_name="colours")
    tensor = request.inputs.add(name="image", datatype="BYTES", shape=[2])
    tensor.contents.bytes_contents.extend([RED, GREEN])
    reply = endpoint.stub().ModelInfer(request, metadata=keyed(), timeout=TIMEOUT_S)
    raw = np.frombuffer(reply.raw_output_contents[0], dtype="<f4").reshape(2, 3)
    expected = infer(endpoint, [RED, GREEN]).as_numpy("probabilities")
    np.testing.assert_allclose(raw, expected, atol=1e-6)


def test_class_count_returns_the_classification_strings(endpoint: Endpoint) -> None:
    wanted = [triton.InferRequestedOutput("probabilities", class_count=2)]
    strings = infer(endpoint, [RED, GREEN], outputs=wanted).as_numpy("probabilities")
    probabilities = infer(endpoint, [RED, GREEN]).as_numpy("probabilities")
    assert strings.shape == (2, 2)
    assert (
        strings.tolist()
        == classification_strings(probabilities, ["red", "green", "blue"], 2).tolist()
    )
    assert strings[0, 0].decode().endswith(":0:red")


@pytest.mark.parametrize(
    ("settings", "images", "code"),
    [
        ({"max_batch_size": 1}, [RED, GREEN], grpc.StatusCode.INVALID_ARGUMENT),
        ({"max_image_pixels": 100}, [png((0, 0, 0), (20, 20))], grpc.StatusCode.RESOURCE_EXHAUSTED),
        ({}, [b"not an image"], grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_a_refused_tensor_says_what_http_says(
    make_endpoint: MakeEndpoint,
    make_client: MakeClient,
    settings: dict,
    images: list[bytes],
    code: grpc.StatusCode,
) -> None:
    endpoint = make_endpoint(**settings)
    error = failure(endpoint.stub().ModelInfer, infer_request(images), metadata=keyed())
    http = make_client(**settings).post("/v2/models/colours/infer", **binary_request(images))
    assert error.code() == code
    assert error.details() == http.json()["error"]
    assert endpoint.worker.admission.inflight == 0


def test_bad_tensors_are_invalid_arguments(endpoint: Endpoint) -> None:
    stub = endpoint.stub()
    request = pb.ModelInferRequest(model_name="colours")
    request.inputs.add(name="image", datatype="FP32", shape=[1]).contents.fp32_contents.append(1.0)
    error = failure(stub.ModelInfer, request, metadata=keyed())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "has datatype FP32; send encoded images" in error.details()
    request = infer_request([RED])
    request.raw_input_contents.append(b"more")
    error = failure(stub.ModelInfer, request, metadata=keyed())
    assert "1 inputs but 2 raw_input_contents" in error.details()
    unknown = failure(stub.ModelInfer, infer_request([RED], "nope"), metadata=keyed())
    assert unknown.code() == grpc.StatusCode.NOT_FOUND


def test_a_message_over_the_upload_limit_is_resource_exhausted(
    make_endpoint: MakeEndpoint,
) -> None:
    endpoint = make_endpoint(max_upload_bytes=1000)
    too_big = infer_request([b"\0" * (2 * endpoint.server.max_message_bytes)])
    error = failure(endpoint.stub().ModelInfer, too_big, metadata=keyed())
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_full_worker_is_unavailable_with_retry_after(make_endpoint: MakeEndpoint) -> None:
    endpoint = make_endpoint(max_inflight=1)
    admission = endpoint.worker.admission
    with admission.slot():  # another request holds the only place
        started = time.monotonic()
        error = failure(endpoint.stub().ModelInfer, infer_request([RED]), metadata=keyed())
        refused_s = time.monotonic() - started
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "holds 1 of 1 images or jobs" in error.details()
    assert dict(error.trailing_metadata())[RETRY_AFTER] == "1"
    assert refused_s < 2
    assert admission.inflight == 0
    assert infer(endpoint, [RED]).as_numpy("probabilities").shape == (1, 3)


def test_keys_and_scopes_are_those_of_http(make_endpoint: MakeEndpoint) -> None:
    endpoint = make_endpoint()
    client = endpoint.client()
    assert client.is_server_live()  # public: no key
    cases = [
        ({}, "StatusCode.UNAUTHENTICATED", "this route needs a key"),
        ({"authorization": "Bearer wrong"}, "StatusCode.UNAUTHENTICATED", "not valid here"),
        (endpoint.headers(ADMIN_KEY), "StatusCode.PERMISSION_DENIED", "admin scope, not infer"),
    ]
    for headers, status, message in cases:
        with pytest.raises(InferenceServerException) as caught:
            client.get_server_metadata(headers=headers)
        assert caught.value.status() == status
        assert message in caught.value.message()
    assert client.get_server_metadata(headers={"x-api-key": INFER_KEY}).name == "argos"
    with pytest.raises(InferenceServerException) as caught:
        client.get_model_repository_index(headers=endpoint.headers())
    assert caught.value.status() == "StatusCode.PERMISSION_DENIED"


def test_model_control_is_off_without_admin_keys(
    make_endpoint: MakeEndpoint, make_client: MakeClient
) -> None:
    endpoint = make_endpoint(admin_keys=[])
    with pytest.raises(InferenceServerException) as caught:
        endpoint.client().load_model("shades", headers=endpoint.headers())
    http = make_client(admin_keys=[]).post("/v2/repository/models/shades/load")
    assert caught.value.status() == "StatusCode.PERMISSION_DENIED"
    assert caught.value.message() == http.json()["error"]


def test_the_admin_key_loads_lists_and_unloads(endpoint: Endpoint) -> None:
    client, admin = endpoint.client(), endpoint.headers(ADMIN_KEY)
    client.load_model("shades", headers=admin)
    assert infer(endpoint, [RED], model_name="shades").as_numpy("probabilities").shape == (1, 3)
    index = client.get_model_repository_index(headers=admin, as_json=True)["models"]
    states = {(entry["name"], entry["version"]): entry["state"] for entry in index}
    assert states[("shades", "1")] == "READY"
    assert states[("colours", "2")] == "UNAVAILABLE"
    client.unload_model("shades", headers=admin)
    with pytest.raises(InferenceServerException) as caught:
        infer(endpoint, [RED], model_name="shades")
    assert caught.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException) as caught:
        client.load_model("shades", config="{}", headers=admin)
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "takes no ['config']" in caught.value.message()


def test_a_call_past_its_deadline_is_cancelled_and_gives_back_its_place(
    make_endpoint: MakeEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = make_endpoint(inline_max_decoded_bytes=0)  # the runner's path: slowed below
    model = endpoint.worker.models.get("colours")

    async def slow(pixels: np.ndarray, announced: object = None) -> np.ndarray:
        await asyncio.sleep(30)
        raise AssertionError("cancelled before")

    monkeypatch.setattr(model, "classify", slow)
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        endpoint.stub().ModelInfer(infer_request([RED]), metadata=keyed(), timeout=0.5)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 3
    deadline = time.monotonic() + 3
    while endpoint.worker.admission.inflight and time.monotonic() < deadline:
        time.sleep(0.05)
    assert endpoint.worker.admission.inflight == 0


def test_drain_finishes_accepted_calls_and_refuses_new_ones(
    make_endpoint: MakeEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = make_endpoint(inline_max_decoded_bytes=0)  # the runner's path: slowed below
    model = endpoint.worker.models.get("colours")
    classify = model.classify

    async def slow(pixels: np.ndarray, announced: object = None) -> np.ndarray:
        await asyncio.sleep(1)
        return await classify(pixels)

    monkeypatch.setattr(model, "classify", slow)
    stub = endpoint.stub()
    accepted = stub.ModelInfer.future(infer_request([RED]), metadata=keyed(), timeout=TIMEOUT_S)
    time.sleep(0.3)
    endpoint.worker.admission.draining = True
    endpoint.server.drain()
    reply = accepted.result(timeout=TIMEOUT_S)
    assert len(reply.raw_output_contents[0]) == 3 * 4
    with pytest.raises(grpc.RpcError) as caught:
        endpoint.stub().ModelInfer(infer_request([RED]), metadata=keyed(), timeout=2)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_unoffered_rpcs_are_unimplemented(endpoint: Endpoint) -> None:
    with pytest.raises(InferenceServerException) as caught:
        endpoint.client().get_inference_statistics(headers=endpoint.headers())
    assert caught.value.status() == "StatusCode.UNIMPLEMENTED"


def test_workers_share_the_port(make_endpoint: MakeEndpoint) -> None:
    first = make_endpoint()
    second = make_endpoint()
    assert first.server.port != second.server.port  # port 0: each picks one
    again = GRPCServer(first.worker, second.server.servicer.access, "127.0.0.1", first.server.port)
    first.on_loop(again.start).result(timeout=10)
    try:
        assert again.port == first.server.port  # SO_REUSEPORT: both bound
    finally:
        first.on_loop(again.stop).result(timeout=10)


def test_every_rpc_is_public_keyed_or_unimplemented(endpoint: Endpoint) -> None:
    """Each RPC of Triton's service, called with an empty request and no key: those that
    Argos's protocol does not declare are answered by gRPC itself."""
    channel = grpc.insecure_channel(endpoint.url)
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    seen = {}
    for method in service.methods:
        if method.client_streaming or method.server_streaming:
            continue
        call = channel.unary_unary(
            f"/{service.full_name}/{method.name}",
            request_serializer=lambda message: message.SerializeToString(),
            response_deserializer=GetMessageClass(method.output_type).FromString,
        )
        try:
            call(GetMessageClass(method.input_type)(), timeout=TIMEOUT_S)
            seen[method.name] = grpc.StatusCode.OK
        except grpc.RpcError as error:
            seen[method.name] = error.code()
    keyed = [
        "ServerMetadata",
        "ModelReady",
        "ModelMetadata",
        "ModelConfig",
        "ModelInfer",
        "RepositoryIndex",
        "RepositoryModelLoad",
        "RepositoryModelUnload",
    ]
    expected = {name: grpc.StatusCode.UNIMPLEMENTED for name in seen}
    expected |= {name: grpc.StatusCode.UNAUTHENTICATED for name in keyed}
    expected |= {"ServerLive": grpc.StatusCode.OK, "ServerReady": grpc.StatusCode.OK}
    assert seen == expected


def test_a_message_counts_against_the_upload_bytes_as_a_body_does(
    make_endpoint: MakeEndpoint, make_client: MakeClient
) -> None:
    photo = png((0, 0, 0), (64, 64))
    endpoint = make_endpoint(max_buffered_bytes=50)
    error = failure(endpoint.stub().ModelInfer, infer_request([photo]), metadata=keyed())
    http = make_client(max_buffered_bytes=50).post(
        "/v2/models/colours/infer", **binary_request([photo])
    )
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error.details() == http.json()["error"]
    assert endpoint.worker.uploads.held == 0
