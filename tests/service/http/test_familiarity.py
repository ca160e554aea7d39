"""Familiarity and unknown in every reply of a model with statistics, in-process.

The tiny ``greys`` model's distance is how far an image's channel means lie from mid-grey,
and its held-out distances run evenly from 0 to 50: a grey image is as familiar as they
come, a saturated one is unknown.
"""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as triton
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.service.http.conftest import FAMILIAR_MODEL, MakeClient
from tests.service.http.test_classify import png
from tests.service.http.test_v2 import binary_request, json_request, result

GREY, NEAR_GREY, RED = png((128, 128, 128)), png((138, 128, 128)), png((250, 10, 10))
PNG = {"Content-Type": "image/png"}


@pytest.fixture()
def familiar(make_client: MakeClient) -> TestClient:
    return make_client({FAMILIAR_MODEL: ["1"], "colours": ["1"]})


def classify(client: TestClient, image: bytes, query: str = "") -> dict:
    reply = client.post(f"/classify?{query}", content=image, headers=PNG)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_classify_says_how_familiar_an_image_is_and_flags_the_unknown(
    familiar: TestClient,
) -> None:
    grey, near, red = (classify(familiar, image) for image in (GREY, NEAR_GREY, RED))
    assert (grey["familiarity"], grey["unknown"]) == (1.0, False)
    # 10 levels from grey in one channel: distance 10 of a held-out 0..50, so 0.8.
    assert near["familiarity"] == pytest.approx(0.8, abs=0.01) and near["unknown"] is False
    assert (red["familiarity"], red["unknown"]) == (0.0, True)
    assert red["predictions"][0]["label"] == "red", "the nearest label is still given"


def test_a_model_without_statistics_says_nothing_about_familiarity(
    familiar: TestClient,
) -> None:
    body = classify(familiar, RED, "model=colours")
    assert "familiarity" not in body and "unknown" not in body


def test_explained_replies_carry_the_same_familiarity(familiar: TestClient) -> None:
    for image in (NEAR_GREY, RED):
        plain, explained = classify(familiar, image), classify(familiar, image, "explain=true")
        assert explained["familiarity"] == pytest.approx(plain["familiarity"], abs=1e-4)
        assert explained["unknown"] == plain["unknown"]


def test_unknown_images_are_counted_for_prometheus(familiar: TestClient) -> None:
    def counted() -> float:
        return sum(
            sample.value
            for family in text_string_to_metric_families(generate_latest(REGISTRY).decode())
            for sample in family.samples
            if sample.name == "argos_unknown_images_total"
            and sample.labels.get("model") == f"{FAMILIAR_MODEL}:1"
        )

    before = counted()
    classify(familiar, RED)
    classify(familiar, GREY)
    assert counted() == before + 1


def test_v2_lists_and_answers_familiarity_and_unknown(familiar: TestClient) -> None:
    metadata = familiar.get(f"/v2/models/{FAMILIAR_MODEL}").json()
    outputs = {output["name"]: output for output in metadata["outputs"]}
    assert outputs["familiarity"] == {"name": "familiarity", "datatype": "FP32", "shape": [-1]}
    assert outputs["unknown"] == {"name": "unknown", "datatype": "BOOL", "shape": [-1]}
    config = familiar.get(f"/v2/models/{FAMILIAR_MODEL}/config").json()
    assert [o["name"] for o in config["output"]] == ["probabilities", "familiarity", "unknown"]

    answer = result(
        familiar.post(f"/v2/models/{FAMILIAR_MODEL}/infer", **binary_request([GREY, RED]))
    )
    np.testing.assert_allclose(answer.as_numpy("familiarity"), [1.0, 0.0])
    assert answer.as_numpy("unknown").tolist() == [False, True]
    assert answer.as_numpy("probabilities").shape == (2, 3)


def test_v2_json_outputs_and_their_errors(familiar: TestClient) -> None:
    request = json_request([RED], outputs=[{"name": "unknown"}])
    reply = familiar.post(f"/v2/models/{FAMILIAR_MODEL}/infer", **request)
    assert reply.status_code == 200, reply.text
    assert reply.json()["outputs"] == [
        {"name": "unknown", "datatype": "BOOL", "shape": [1], "data": [True]}
    ]
    classified = [triton.InferRequestedOutput("familiarity", class_count=2)]
    reply = familiar.post(f"/v2/models/{FAMILIAR_MODEL}/infer", **binary_request([RED], classified))
    assert reply.status_code == 400 and "one value per image" in reply.text
    reply = familiar.post(
        "/v2/models/colours/infer", **json_request([RED], outputs=[{"name": "unknown"}])
    )
    assert reply.status_code == 400 and "has no output 'unknown'" in reply.text
