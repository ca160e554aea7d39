"""The v2 codec against the stock ``tritonclient.http``: bodies it builds, bodies it reads."""

from __future__ import annotations

import base64
import gzip
import json
import zlib

import numpy as np
import pytest
import tritonclient.http as triton

from service.errors import PayloadTooLarge, UnsupportedMediaType
from service.http.v2.codec import (
    INFERENCE_HEADER,
    OutputRequest,
    classification_strings,
    decode_bytes_elements,
    decompress,
    encode_bytes_elements,
    encode_response,
    images_of,
    parse_request,
    probability_outputs,
    requested_outputs,
)
from service.http.v2.errors import InvalidTensor

# Encoded images are opaque to the codec; these are deliberately not UTF-8 (0xff, 0x00).
IMAGES = [b"\xff\xd8\xff\xe0first\x00image", b"\x89PNG\r\n\x1a\nsecond", b"\x00"]
LABELS = ["cat", "dog", "bo"]
PROBABILITIES = np.array([[0.1, 0.7, 0.2], [0.25, 0.25, 0.5], [0.6, 0.3, 0.1]], dtype=np.float32)


def triton_body(
    images: list[bytes] | list[str], *, binary: bool = True, outputs=None, **kwargs
) -> tuple[bytes, str | None]:
    """The body and Inference-Header-Content-Length tritonclient sends for ``images``."""
    tensor = triton.InferInput("image", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=np.object_), binary_data=binary)
    body, json_size = triton.InferenceServerClient.generate_request_body(
        [tensor], outputs=outputs, **kwargs
    )
    return body, None if json_size is None else str(json_size)


def as_text(element: bytes | str) -> str:
    return element.decode() if isinstance(element, bytes) else element


def decode_images(body: bytes, header: str | None, max_images: int = 8) -> list[bytes]:
    return images_of(
        parse_request(body, header, max_images=max_images), "image", max_images=max_images
    )


def test_binary_images_from_tritonclient_come_back_byte_for_byte():
    body, header = triton_body(IMAGES)
    assert header is not None and int(header) < len(body)
    assert decode_images(body, header) == IMAGES


def test_json_images_are_base64_strings():
    encoded = [base64.b64encode(image).decode() for image in IMAGES]
    body, header = triton_body(encoded, binary=False)
    assert header is None
    assert decode_images(body, header) == IMAGES


def test_json_images_may_be_nested_row_major():
    encoded = [base64.b64encode(image).decode() for image in IMAGES]
    body = json.dumps(
        {"inputs": [{"name": "image", "shape": [3], "datatype": "BYTES", "data": [encoded]}]}
    ).encode()
    assert decode_images(body, None) == IMAGES


def test_request_id_and_parameters_are_read():
    body, header = triton_body(IMAGES[:1], request_id="42")
    decoded = parse_request(body, header, max_images=8)
    assert decoded.request.id == "42"
    assert decoded.request.parameters == {"binary_data_output": True}


def test_bytes_elements_round_trip_through_tritonclient_serialiser():
    serialised = triton.serialize_byte_tensor(np.array(IMAGES, dtype=np.object_)).item()
    assert encode_bytes_elements(IMAGES) == serialised
    assert decode_bytes_elements(serialised) == IMAGES


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda data: data[:2], "length prefix"),
        (lambda data: data[:-1], "declares"),
    ],
)
def test_cut_bytes_elements_are_refused(mangle, message):
    with pytest.raises(InvalidTensor, match=message):
        decode_bytes_elements(mangle(encode_bytes_elements(IMAGES)))


@pytest.mark.parametrize("header", ["abc", "0", "-5", "99999999"])
def test_bad_inference_header_length_is_refused(header):
    body, _ = triton_body(IMAGES)
    with pytest.raises(InvalidTensor, match=INFERENCE_HEADER):
        parse_request(body, header, max_images=8)


def test_binary_data_past_the_body_is_refused():
    body, header = triton_body(IMAGES)
    with pytest.raises(InvalidTensor, match="only .* remain after the JSON object"):
        parse_request(body[:-3], header, max_images=8)


def test_bytes_no_input_claims_are_refused():
    body, header = triton_body(IMAGES)
    with pytest.raises(InvalidTensor, match="belong to no input"):
        parse_request(body + b"extra", header, max_images=8)


def test_binary_data_size_needs_the_header():
    tensor = {"name": "image", "shape": [1], "datatype": "BYTES"}
    tensor["parameters"] = {"binary_data_size": 0}
    with pytest.raises(InvalidTensor, match="has no Inference-Header-Content-Length"):
        parse_request(json.dumps({"inputs": [tensor]}).encode(), None, max_images=8)


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        ({"name": "image", "shape": [1], "datatype": "BYTES"}, "exactly one of"),
        (
            {
                "name": "image",
                "shape": [1],
                "datatype": "BYTES",
                "data": ["AA=="],
                "parameters": {"binary_data_size": 0},
            },
            "exactly one of",
        ),
        (
            {
                "name": "image",
                "shape": [1],
                "datatype": "BYTES",
                "parameters": {"shared_memory_region": "r", "shared_memory_byte_size": 8},
            },
            "shared memory",
        ),
        (
            {
                "name": "image",
                "shape": [1],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": "8"},
            },
            "byte count",
        ),
        ({"name": "image", "shape": [-1], "datatype": "BYTES", "data": []}, "shape"),
        ({"name": "image", "datatype": "BYTES", "data": []}, "shape"),
    ],
)
def test_malformed_inputs_are_refused(tensor, message):
    body = json.dumps({"inputs": [tensor]}).encode()
    with pytest.raises(InvalidTensor, match=message):
        parse_request(body, None, max_images=8)


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'{"inputs": []}'])
def test_bodies_that_are_not_requests_are_refused(body):
    with pytest.raises(InvalidTensor, match="not valid"):
        parse_request(body, None, max_images=8)


def test_duplicate_input_names_are_refused():
    tensor = {"name": "image", "shape": [1], "datatype": "BYTES", "data": ["AA=="]}
    with pytest.raises(InvalidTensor, match="unique"):
        parse_request(json.dumps({"inputs": [tensor, tensor]}).encode(), None, max_images=8)


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        ({"name": "image", "shape": [1], "datatype": "FP32", "data": [1.0]}, "datatype FP32"),
        ({"name": "image", "shape": [1, 1], "datatype": "BYTES", "data": ["AA=="]}, r"\[N\]"),
        ({"name": "image", "shape": [0], "datatype": "BYTES", "data": []}, r"\[N\]"),
        ({"name": "image", "shape": [2], "datatype": "BYTES", "data": ["AA=="]}, "holds 1"),
        ({"name": "image", "shape": [1], "datatype": "BYTES", "data": ["%%%"]}, "not base64"),
        ({"name": "image", "shape": [1], "datatype": "BYTES", "data": [7]}, "is int"),
        ({"name": "image", "shape": [1], "datatype": "BYTES", "data": [""]}, "is empty"),
        ({"name": "image", "shape": [9], "datatype": "BYTES", "data": ["AA=="] * 9}, "at most 8"),
    ],
)
def test_inputs_that_are_not_images_are_refused(tensor, message):
    body = json.dumps({"inputs": [tensor]}).encode()
    with pytest.raises(InvalidTensor, match=message):
        decode_images(body, None, max_images=8)


def test_binary_element_count_must_match_the_shape():
    tensor = triton.InferInput("image", [3], "BYTES")
    tensor.set_data_from_numpy(np.array(IMAGES, dtype=np.object_))
    tensor.set_shape([2])
    body, json_size = triton.InferenceServerClient.generate_request_body([tensor])
    with pytest.raises(InvalidTensor, match=r"shape \[2\] but holds 3"):
        decode_images(body, str(json_size))


def test_without_outputs_every_output_comes_back_as_asked_by_binary_data_output():
    body, header = triton_body(IMAGES[:1])
    request = parse_request(body, header, max_images=8).request
    assert requested_outputs(request, ["probabilities"], labels=3) == [
        OutputRequest("probabilities", binary=True)
    ]


def test_requested_outputs_follow_tritonclient_parameters():
    outputs = [triton.InferRequestedOutput("probabilities", binary_data=False, class_count=2)]
    body, header = triton_body(IMAGES[:1], outputs=outputs)
    request = parse_request(body, header, max_images=8).request
    assert requested_outputs(request, ["probabilities"], labels=3) == [
        OutputRequest("probabilities", binary=False, classification=2)
    ]


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ([{"name": "logits"}], "no output 'logits'"),
        ([{"name": "probabilities"}, {"name": "probabilities"}], "unique"),
        ([{"name": "probabilities", "parameters": {"classification": -1}}], "whole number"),
        ([{"name": "probabilities", "parameters": {"classification": 1.5}}], "whole number"),
        ([{"name": "probabilities", "parameters": {"classification": True}}], "whole number"),
        ([{"name": "probabilities", "parameters": {"binary_data": "yes"}}], "true or false"),
    ],
)
def test_bad_output_requests_are_refused(outputs, message):
    tensor = {"name": "image", "shape": [1], "datatype": "BYTES", "data": ["AA=="]}
    request = parse_request(
        json.dumps({"inputs": [tensor], "outputs": outputs}).encode(), None, max_images=8
    )
    with pytest.raises(InvalidTensor, match=message):
        requested_outputs(request.request, ["probabilities"], labels=3)


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_reads_fp32_probabilities_exactly(binary):
    outputs = probability_outputs(
        PROBABILITIES, LABELS, [OutputRequest("probabilities", binary=binary)]
    )
    encoded = encode_response(
        model_name="pets", model_version="v1", request_id="7", outputs=outputs
    )
    result = triton.InferenceServerClient.parse_response_body(
        encoded.body, header_length=encoded.header_length
    )
    probabilities = result.as_numpy("probabilities")
    assert probabilities.dtype == np.float32
    np.testing.assert_array_equal(probabilities, PROBABILITIES)
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == (
        "pets",
        "v1",
        "7",
    )
    assert (INFERENCE_HEADER in encoded.headers) is binary


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_reads_classification_strings(binary):
    outputs = probability_outputs(
        PROBABILITIES, LABELS, [OutputRequest("probabilities", binary, classification=2)]
    )
    encoded = encode_response(
        model_name="pets", model_version=None, request_id=None, outputs=outputs
    )
    result = triton.InferenceServerClient.parse_response_body(
        encoded.body, header_length=encoded.header_length
    )
    classes = result.as_numpy("probabilities")
    assert classes.shape == (3, 2)
    # tritonclient gives bytes from binary data and str from JSON, as Triton's own replies
    assert [[as_text(element) for element in row] for row in classes] == [
        ["0.700000:1:dog", "0.200000:2:bo"],
        ["0.500000:2:bo", "0.250000:0:cat"],
        ["0.600000:0:cat", "0.300000:1:dog"],
    ]
    assert "model_version" not in result.get_response()


def test_classification_count_is_capped_at_the_labels():
    strings = classification_strings(PROBABILITIES[:1], LABELS, 10)
    assert strings.shape == (1, 3)
    scores = [float(element.split(b":")[0]) for element in strings[0]]
    assert scores == sorted(scores, reverse=True)


def test_mixed_outputs_keep_binary_data_in_output_order():
    outputs = probability_outputs(
        PROBABILITIES,
        LABELS,
        [OutputRequest("top", True, classification=1), OutputRequest("probabilities", True)],
    )
    encoded = encode_response(model_name="m", model_version="1", request_id=None, outputs=outputs)
    result = triton.InferenceServerClient.parse_response_body(
        encoded.body, header_length=encoded.header_length
    )
    assert [row[0].decode() for row in result.as_numpy("top")] == [
        "0.700000:1:dog",
        "0.500000:2:bo",
        "0.600000:0:cat",
    ]
    np.testing.assert_array_equal(result.as_numpy("probabilities"), PROBABILITIES)


@pytest.mark.parametrize(
    ("encoding", "compress"), [("gzip", gzip.compress), ("deflate", zlib.compress)]
)
def test_compressed_bodies_as_tritonclient_sends_them(encoding, compress):
    body, _ = triton_body(IMAGES)
    assert decompress(compress(body), encoding, max_bytes=len(body)) == body


def test_decompression_stops_at_the_upload_limit():
    bomb = gzip.compress(b"\x00" * 1_000_000)
    with pytest.raises(PayloadTooLarge, match="inflates to more than"):
        decompress(bomb, "gzip", max_bytes=1000)


@pytest.mark.parametrize(
    ("body", "encoding", "error"),
    [
        (b"not gzip", "gzip", InvalidTensor),
        (gzip.compress(b"x" * 100)[:20], "gzip", InvalidTensor),
        (b"{}", "br", UnsupportedMediaType),
    ],
)
def test_undecodable_encodings_are_refused(body, encoding, error):
    with pytest.raises(error):
        decompress(body, encoding, max_bytes=1000)


def test_identity_is_left_alone():
    assert decompress(b"{}", None, max_bytes=1) == b"{}"
