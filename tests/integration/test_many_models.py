"""One real server with three models and API keys: /classify?model=, the Open Inference
Protocol from the stock ``tritonclient``, unload, load and rollback while other clients keep
classifying, and the keys as an attacker on the same network would meet them."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
import yaml
from tritonclient._plugin import InferenceServerClientPlugin
from tritonclient.utils import InferenceServerException

from clients.http import ArgosClient
from clients.petdoor.cli import main as petdoor
from harness.local_server import local_server
from training import store

pytestmark = pytest.mark.integration

PETS_TAG = os.environ.get("ARGOS_PETS_MODEL", "pets:latest")
PETS_VERSIONS = ("1", "2")
MODELS = "imagenet-mobilenetv2:latest,pets:latest,doggy-door:latest"
INFER_KEY, ADMIN_KEY = "infer-key-of-the-e2e-tests", "admin-key-of-the-e2e-tests"
INFER = {"Authorization": f"Bearer {INFER_KEY}"}


def add_version(models: Path, source: Path, name: str, version: str) -> None:
    """Store a stored artifact folder again as ``name:version``: its files linked, its card
    and BentoML's ``model.yaml`` rewritten with the new name and version."""
    target = models / name / version
    target.mkdir(parents=True)
    for item in source.iterdir():
        if item.name not in ("card.json", "model.yaml"):
            (target / item.name).symlink_to(item)
    card = json.loads((source / "card.json").read_text()) | {"name": name, "version": version}
    (target / "card.json").write_text(json.dumps(card))
    info = yaml.safe_load((source / "model.yaml").read_text()) | {"name": name, "version": version}
    (target / "model.yaml").write_text(yaml.safe_dump(info))
    (models / name / "latest").write_text(version)


@pytest.fixture(scope="module")
def model_home(
    tmp_path_factory: pytest.TempPathFactory, default_model: str, doggy_door_model: str
) -> Path:
    """A BentoML home holding the default and doggy-door models, and ``pets`` in two
    versions: copies of the shared store's pets model, or where it has none, of the
    doggy-door model standing in for it."""
    home = tmp_path_factory.mktemp("bentoml-home")
    models = home / "models"
    for tag in (default_model, doggy_door_model):
        source = store.artifact_path(tag)
        (models / source.parent.name).mkdir(parents=True)
        (models / source.parent.name / source.name).symlink_to(source)
        (models / source.parent.name / "latest").write_text(source.name)
    pets = store.artifact_path(PETS_TAG if store.exists(PETS_TAG) else doggy_door_model)
    for version in PETS_VERSIONS:
        add_version(models, pets, "pets", version)
    return home


@pytest.fixture(scope="module")
def key_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("keys")
    files = {"infer": folder / "infer", "admin": folder / "admin"}
    files["infer"].write_text(f"{INFER_KEY}\n{ADMIN_KEY}\n")  # the admin may classify too
    files["admin"].write_text(f"{ADMIN_KEY}\n")
    return files


@pytest.fixture(scope="module")
def url(model_home: Path, key_files: dict[str, Path]) -> Iterator[str]:
    settings = {
        "ARGOS_MODELS": MODELS,
        "ARGOS_WORKERS": "2",
        "ARGOS_INFER_KEYS_FILE": str(key_files["infer"]),
        "ARGOS_ADMIN_KEYS_FILE": str(key_files["admin"]),
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENTOML_HOME", str(model_home))
        with local_server(settings) as server:
            yield server.url


class BearerKey(InferenceServerClientPlugin):
    """Sends a key with every tritonclient request."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self, request) -> None:
        request.headers["Authorization"] = f"Bearer {self.key}"


@pytest.fixture(scope="module")
def photo(images: Path) -> bytes:
    return (images / "happy_dog.jpg").read_bytes()


def classify(http: httpx.Client, photo: bytes, model: str | None = None) -> httpx.Response:
    params = {} if model is None else {"model": model}
    return http.post("/classify", params=params, content=photo,
                     headers={"Content-Type": "image/jpeg"})  # fmt: skip


def tritonclient(url: str, key: str = ADMIN_KEY) -> triton.InferenceServerClient:
    """The stock client, sending ``key`` (by default one with both scopes' keys)."""
    client = triton.InferenceServerClient(url.removeprefix("http://"), network_timeout=60)
    client.register_plugin(BearerKey(key))
    return client


def images_input(*photos: bytes) -> triton.InferInput:
    tensor = triton.InferInput("image", [len(photos)], "BYTES")
    tensor.set_data_from_numpy(np.array(photos, dtype=np.object_))
    return tensor


def wait_for_more(replies: list, more: int = 3, timeout_s: float = 30) -> None:
    """Let a background client get ``more`` replies."""
    target, deadline = len(replies) + more, time.monotonic() + timeout_s
    while len(replies) < target and time.monotonic() < deadline:
        time.sleep(0.02)


def test_models_lists_the_three_and_model_picks_one(url: str, photo: bytes) -> None:
    with httpx.Client(base_url=url, timeout=60, headers=INFER) as http:
        served = http.get("/models").json()
        assert served["default"] == "imagenet-mobilenetv2"
        assert [(m["name"], m["state"]) for m in served["models"]] == [
            ("imagenet-mobilenetv2", "READY"), ("pets", "READY"), ("doggy-door", "READY")
        ]  # fmt: skip
        assert classify(http, photo).json()["model"]["name"] == "imagenet-mobilenetv2"
        pets = classify(http, photo, "pets")
        assert pets.json()["model"] == {"name": "pets", "version": PETS_VERSIONS[-1]}
        assert pets.headers["X-Argos-Model"] == f"pets:{PETS_VERSIONS[-1]}"
        unknown = classify(http, photo, "cats")
        assert unknown.status_code == 404
        assert "imagenet-mobilenetv2, pets, doggy-door" in unknown.json()["detail"]


def test_tritonclient_infers_doggy_door_as_classify_does(url: str, photo: bytes) -> None:
    client = tritonclient(url)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("doggy-door")
    metadata = client.get_model_metadata("doggy-door")
    assert metadata["inputs"][0] == {"name": "image", "datatype": "BYTES", "shape": [-1]}
    config = client.get_model_config("doggy-door")
    assert (config["max_batch_size"], config["output"][0]["dims"]) == (0, [-1, 2])
    result = client.infer(
        "doggy-door", [images_input(photo, photo)], request_compression_algorithm="gzip"
    )
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (2, 2)
    with httpx.Client(base_url=url, timeout=60, headers=INFER) as http:
        reply = classify(http, photo, "doggy-door").json()
    scores = {p["index"]: p["score"] for p in reply["predictions"]}
    assert probabilities[0].tolist() == pytest.approx([scores[0], scores[1]], abs=1e-6)
    best = tritonclient(url).infer(
        "doggy-door",
        [images_input(photo)],
        outputs=[triton.InferRequestedOutput("probabilities", class_count=1)],
    )
    (top,) = best.as_numpy("probabilities")[0]
    assert top.decode().split(":")[2] == reply["predictions"][0]["label"]


def test_tritonclient_sees_protocol_errors(url: str, photo: bytes) -> None:
    client = tritonclient(url)
    with pytest.raises(InferenceServerException) as bad_image:
        client.infer("doggy-door", [images_input(photo, b"not an image")])
    assert bad_image.value.status() == "400"
    assert "image 1 of input 'image'" in bad_image.value.message()
    with pytest.raises(InferenceServerException) as unknown:
        client.infer("cats", [images_input(photo)])
    assert unknown.value.status() == "404"


def test_unload_load_and_rollback_without_a_failed_request(url: str, photo: bytes) -> None:
    stop = threading.Event()
    default_replies: list[int] = []
    pets_replies: list[tuple[int, str]] = []

    def keep_classifying(model: str | None, replies: list) -> None:
        with httpx.Client(base_url=url, timeout=60, headers=INFER) as http:
            while not stop.is_set():
                reply = classify(http, photo, model)
                version = reply.json().get("model", {}).get("version", "")
                replies.append(reply.status_code if model is None else (reply.status_code, version))

    client = tritonclient(url)
    default_client = threading.Thread(target=keep_classifying, args=(None, default_replies))
    pets_client = threading.Thread(target=keep_classifying, args=("pets", pets_replies))
    default_client.start()
    try:
        wait_for_more(default_replies)
        client.unload_model("pets")
        assert not client.is_model_ready("pets")
        wait_for_more(default_replies)
        client.load_model("pets")
        assert client.is_model_ready("pets", PETS_VERSIONS[-1])

        pets_client.start()
        wait_for_more(pets_replies)
        client.load_model(f"pets:{PETS_VERSIONS[0]}")  # roll back: the previous version first,
        wait_for_more(pets_replies)
        client.unload_model(f"pets:{PETS_VERSIONS[-1]}")  # then unload the bad one
        wait_for_more(pets_replies)
    finally:
        stop.set()
        default_client.join()
        if pets_client.is_alive():
            pets_client.join()

    assert set(default_replies) == {200}, default_replies
    assert {status for status, _ in pets_replies} == {200}, pets_replies
    versions = [version for _, version in pets_replies]
    assert versions[0] == PETS_VERSIONS[-1] and versions[-1] == PETS_VERSIONS[0]
    assert not client.is_model_ready("pets", PETS_VERSIONS[-1])
    with httpx.Client(base_url=url, timeout=60, headers=INFER) as http:
        versions = [(m["name"], m["version"]) for m in http.get("/models").json()["models"]]
    assert ("pets", PETS_VERSIONS[0]) in versions and ("pets", PETS_VERSIONS[-1]) not in versions


def test_the_pet_door_uses_doggy_door_from_the_server_that_serves_imagenet(
    url: str, shared_dir: Path, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("allow: [bo]\ndeny: []\ndebounce_frames: 1\n")
    audit = tmp_path / "audit.jsonl"
    bo = shared_dir / "data" / "doggy_door" / "bo" / "bo_1.jpg"
    key_file = tmp_path / "key"
    key_file.write_text(INFER_KEY)
    arguments = ["--url", url, "--model", "doggy-door", "--policy", str(policy), "--file", str(bo)]
    arguments += ["--api-key-file", str(key_file)]
    assert petdoor([*arguments, "--once", "--audit-log", str(audit), "--timeout", "60"]) == 0
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    (record,) = [record for record in records if "top" in record]
    assert {entry["label"] for entry in record["top"]} == {"bo", "not_bo"}
    with ArgosClient(url, timeout=60, model="doggy-door", api_key=INFER_KEY) as client:
        assert client.model_card().labels == ["bo", "not_bo"]
        assert client.classify(bo, top_k=1).predictions[0].label == record["top"][0]["label"]


def test_without_a_key_nothing_is_served_or_changed(url: str, photo: bytes) -> None:
    with httpx.Client(base_url=url, timeout=60) as anonymous:
        assert classify(anonymous, photo).status_code == 401
        assert anonymous.post("/v2/repository/index").status_code == 401
        assert anonymous.get("/readyz").status_code == 200  # probes need no key
    with pytest.raises(InferenceServerException) as refused:
        tritonclient(url, INFER_KEY).unload_model("pets")
    assert refused.value.status() == "403"


def test_a_cross_site_simple_post_unloads_nothing(url: str) -> None:
    """What any web page an operator opens could send: no key, text/plain, foreign Origin."""
    simple = {"Origin": "https://evil.example", "Content-Type": "text/plain"}
    with httpx.Client(base_url=url, timeout=60) as browser:
        for path in ("imagenet-mobilenetv2/unload", "pets/unload", "cats/load"):
            reply = browser.post(f"/v2/repository/models/{path}", content=b"{}", headers=simple)
            assert reply.status_code in (401, 403), reply.text
            assert "access-control-allow-origin" not in reply.headers
    assert tritonclient(url).is_model_ready("imagenet-mobilenetv2")
    assert tritonclient(url).is_server_ready()


def test_unloading_the_default_model_turns_readiness_off_within_a_second(url: str) -> None:
    client = tritonclient(url)
    client.unload_model("imagenet-mobilenetv2")
    try:
        unloaded = time.monotonic()
        with httpx.Client(base_url=url, timeout=10) as http:
            while (probe := http.get("/readyz")).status_code == 200:
                assert time.monotonic() - unloaded < 1, "/readyz stayed 200"
            probes = [http.get("/readyz") for _ in range(8)]  # both workers
            assert {reply.status_code for reply in probes} == {503}
            assert "imagenet-mobilenetv2" in " ".join(probe.json()["reasons"])
            assert http.get("/v2/health/ready").status_code == 503
            assert http.get("/models", headers=INFER).json()["default"] is None
    finally:
        client.load_model("imagenet-mobilenetv2")
    assert client.is_server_ready()


def test_keys_rotate_without_a_restart(url: str, key_files: dict[str, Path]) -> None:
    rotated = "infer-key-after-rotation"

    def status(key: str) -> int:
        with httpx.Client(base_url=url, timeout=10) as http:
            reply = http.get("/v2/models/pets/ready", headers={"Authorization": f"Bearer {key}"})
        return reply.status_code

    original = key_files["infer"].read_text()
    key_files["infer"].write_text(f"{rotated}\n{ADMIN_KEY}\n")
    try:
        deadline = time.monotonic() + 5
        while True:  # six of each reach both workers
            statuses = [(status(rotated), status(INFER_KEY)) for _ in range(6)]
            if set(statuses) == {(200, 401)}:
                break
            assert time.monotonic() < deadline, f"not rotated on every worker in 5 s: {statuses}"
            time.sleep(0.2)
    finally:
        key_files["infer"].write_text(original)
