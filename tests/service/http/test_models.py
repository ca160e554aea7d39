"""Many models in one worker: model=NAME, GET /models, versions loaded and unloaded."""

from __future__ import annotations

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.service.http.conftest import MakeClient
from tests.service.http.test_classify import png

RED = {"content": png((250, 10, 10)), "headers": {"Content-Type": "image/png"}}


def test_model_picks_the_model_and_the_first_is_the_default(make_client: MakeClient) -> None:
    client = make_client({"colours": ["1"], "shades": ["1"]})
    default = client.post("/classify", **RED)
    chosen = client.post("/classify?model=shades", **RED)
    assert default.json()["model"] == {"name": "colours", "version": "1"}
    assert chosen.json()["model"] == {"name": "shades", "version": "1"}
    assert chosen.headers["X-Argos-Model"] == "shades:1"
    assert client.get("/model?model=shades").json()["name"] == "shades"
    detect = client.post("/detect/render?model=shades&classes=red", **RED)
    assert detect.status_code == 200, detect.text
    assert detect.headers["X-Argos-Model"] == "shades:1"


def test_an_unknown_model_is_a_404_listing_the_served_ones(make_client: MakeClient) -> None:
    client = make_client({"colours": ["1"], "shades": ["1"]})
    for reply in (
        client.post("/classify?model=pets", **RED),
        client.post("/detect?model=pets&classes=red", **RED),
        client.get("/model?model=pets"),
    ):
        assert reply.status_code == 404
        assert reply.json()["error"] == "unknown_model"
        assert "served models: colours, shades" in reply.json()["detail"]


def test_models_lists_versions_labels_and_state(make_client: MakeClient) -> None:
    client = make_client({"colours": ["1", "2"], "shades": ["1"]})
    body = client.get("/models").json()
    assert body["default"] == "colours"
    assert [(m["name"], m["version"], m["labels"], m["state"], m["default"])
            for m in body["models"]] == [
        ("colours", "1", 3, "READY", False),
        ("colours", "2", 3, "READY", True),
        ("shades", "1", 3, "READY", True),
    ]  # fmt: skip
    assert client.post("/classify", **RED).json()["model"]["version"] == "2"


def test_rollback_load_the_previous_version_then_unload_the_bad_one(
    make_client: MakeClient,
) -> None:
    client = make_client({"colours": ["2"], "shades": ["1"]})
    assert client.post("/v2/repository/models/colours:1/load").status_code == 200
    assert client.post("/classify", **RED).json()["model"]["version"] == "1"
    assert client.post("/v2/repository/models/colours:2/unload").status_code == 200
    versions = [(m["name"], m["version"]) for m in client.get("/models").json()["models"]]
    assert versions == [("colours", "1"), ("shades", "1")]
    assert client.post("/classify?model=shades", **RED).status_code == 200


def test_unloading_a_model_makes_it_unknown_and_loading_brings_it_back(
    make_client: MakeClient,
) -> None:
    client = make_client({"colours": ["1"], "shades": ["1"]})
    assert client.post("/v2/repository/models/shades/unload").status_code == 200
    assert client.post("/classify?model=shades", **RED).status_code == 404
    assert client.post("/classify", **RED).status_code == 200
    loaded = client.post("/v2/repository/models/shades/load")
    assert loaded.status_code == 200, loaded.text
    assert loaded.json() == {"name": "shades", "version": "1", "state": "READY", "reason": ""}
    assert client.post("/classify?model=shades", **RED).status_code == 200


def test_metrics_label_the_model_with_its_version(make_client: MakeClient) -> None:
    client = make_client({"colours": ["1"], "shades": ["1"]})
    assert client.post("/classify?model=shades", **RED).status_code == 200
    labelled = {
        (sample.name, sample.labels.get("model"))
        for family in text_string_to_metric_families(generate_latest(REGISTRY).decode())
        for sample in family.samples
    }
    assert ("argos_top1_predictions_total", "shades:1") in labelled
    assert ("argos_batch_size_count", "shades:1") in labelled
