"""The pet-door client against real Argos servers: real models, real photos."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
from pathlib import Path

import pytest
from PIL import Image

from clients.http import ArgosClient
from clients.petdoor.audit import AuditLog
from clients.petdoor.cli import main
from clients.petdoor.door import PetDoor
from clients.petdoor.drivers import LogDriver
from clients.petdoor.logic import Decision
from clients.petdoor.policy import Policy
from clients.petdoor.retry import Backoff
from clients.petdoor.sources import FileSource
from service.postprocess import DEFAULT_TOP_K

pytestmark = pytest.mark.integration

# Photos the ImageNet MobileNetV2 scores far from the thresholds (dog or cat group > 0.9).
DOGS = ["11.jpg", "30.jpg", "40.jpg", "46.jpg", "51.jpg"]
CATS = ["5.jpg", "12.jpg", "16.jpg", "38.jpg", "39.jpg"]
PETS_POLICY = Policy(allow=["dog"], deny=["cat"], min_score=0.5, debounce_frames=1)
BO_POLICY = Policy(allow=["bo"], min_score=0.5, debounce_frames=1)


def decide(url: str, policy: Policy, image: Path, audit: AuditLog | None = None) -> Decision:
    """One frame through a fresh door: source -> server -> policy -> driver."""
    printed = io.StringIO()
    with ArgosClient(url, timeout=60) as client:
        door = PetDoor(FileSource(image), client, policy, LogDriver(printed), audit=audit)
        [decision] = door.run_once()
    assert f"door {decision.state}" in printed.getvalue()
    return decision


@pytest.mark.parametrize("name", DOGS)
def test_dog_opens_the_door(argos_url: str, shared_dir: Path, name: str) -> None:
    decision = decide(argos_url, PETS_POLICY, shared_dir / "data" / "pets" / "dog" / name)

    assert (decision.state, decision.code) == ("open", "allowed")
    assert decision.detail.startswith("dog ")


@pytest.mark.parametrize("name", CATS)
def test_cat_keeps_the_door_shut(argos_url: str, shared_dir: Path, name: str) -> None:
    decision = decide(argos_url, PETS_POLICY, shared_dir / "data" / "pets" / "cat" / name)

    assert (decision.state, decision.code) == ("closed", "forced_shut")
    assert decision.detail.startswith("cat ")


def test_audit_line_names_the_frame_and_its_top_labels(
    argos_url: str, shared_dir: Path, tmp_path: Path
) -> None:
    image = shared_dir / "data" / "pets" / "dog" / DOGS[0]
    audit_path = tmp_path / "audit.jsonl"

    decide(argos_url, PETS_POLICY, image, AuditLog(audit_path))

    record = json.loads(audit_path.read_text())
    assert record["frame"] == str(image)
    assert record["decision"] == "open"
    assert len(record["top"]) == DEFAULT_TOP_K  # the policy asks for the server's default
    assert record["groups"][0]["name"] == "dog"
    assert record["groups"][0]["score"] > 0.5


@pytest.mark.parametrize(
    ("name", "code", "label"),
    [("happy_dog.jpg", "allowed", "dog"), ("cat_720p.jpg", "forced_shut", "cat")],
)
def test_detections_reach_the_decision_and_the_audit(
    argos_url: str, shared_dir: Path, tmp_path: Path, name: str, code: str, label: str
) -> None:
    image = shared_dir / "images" / name
    policy = PETS_POLICY.model_copy(update={"use_detect": True})
    audit_path = tmp_path / "audit.jsonl"

    decision = decide(argos_url, policy, image, AuditLog(audit_path))

    assert decision.code == code, decision.reason
    record = json.loads(audit_path.read_text())
    found = [d for d in record["detections"] if d["label"] == label]
    assert found, record["detections"]
    best = max(found, key=lambda d: d["score"])
    # The decision is made on the best score for the name among labels, groups and boxes.
    scores = [best["score"]] + [g["score"] for g in record["groups"] if g["name"] == label]
    assert decision.detail.startswith(f"{label} {max(scores):.2f}"), decision.detail
    width, height = Image.open(image).size
    x0, y0, x1, y1 = best["box"]
    assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height


def test_watched_folder_opens_after_debounce_and_cat_shuts_it(
    argos_url: str, shared_dir: Path, tmp_path: Path
) -> None:
    """The command line on a folder: two dog frames open the door, a cat frame shuts it."""
    pets = shared_dir / "data" / "pets"
    frames = tmp_path / "frames"
    frames.mkdir()
    sequence = [pets / "dog" / DOGS[1], pets / "dog" / DOGS[2], pets / "cat" / CATS[0]]
    for order, source in enumerate(sequence):
        target = frames / f"{order}.jpg"
        shutil.copyfile(source, target)
        os.utime(target, (1_000_000 + order, 1_000_000 + order))
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "allow: [dog]\ndeny: [cat]\ndebounce_frames: 2\n"
        "debounce_max_gap_seconds: 120\nhold_open_seconds: 60\n"
    )
    audit_path, opened, closed = tmp_path / "audit.jsonl", tmp_path / "opened", tmp_path / "closed"

    status = main(
        [
            "--url",
            argos_url,
            "--policy",
            str(policy),
            "--watch",
            str(frames),
            "--once",
            "--audit-log",
            str(audit_path),
            "--timeout",
            "60",
            "--driver",
            "command",
            "--open-command",
            f"touch {opened}",
            "--close-command",
            f"touch {closed}",
        ]
    )

    assert status == 0
    records = [json.loads(line) for line in audit_path.read_text().splitlines()]
    assert [(Path(r["frame"]).name if r["frame"] else None, r["code"]) for r in records] == [
        ("0.jpg", "debouncing"),
        ("1.jpg", "allowed"),
        ("2.jpg", "forced_shut"),
        (None, "shutdown"),
    ]
    assert opened.exists() and closed.exists()


def test_bo_opens_the_doggy_door_and_other_animals_do_not(
    doggy_door_url: str, shared_dir: Path
) -> None:
    folder = shared_dir / "data" / "doggy_door"
    bo = sorted((folder / "bo").glob("*.jpg"))
    others = sorted((folder / "not_bo").glob("*.jpg"))[:30]

    bo_open = [decide(doggy_door_url, BO_POLICY, image).state == "open" for image in bo]
    others_open = [decide(doggy_door_url, BO_POLICY, image).state == "open" for image in others]

    assert len(bo) == 18
    assert sum(bo_open) >= 0.8 * len(bo), f"Bo let in {sum(bo_open)} of {len(bo)} times"
    assert sum(others_open) <= 0.1 * len(others), (
        f"other animals let in {sum(others_open)} of {len(others)} times"
    )


def test_service_down_keeps_the_door_closed(shared_dir: Path, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    image = shared_dir / "data" / "pets" / "dog" / DOGS[0]
    waits: list[float] = []
    printed = io.StringIO()

    with ArgosClient(f"http://127.0.0.1:{port}", timeout=2) as client:
        door = PetDoor(
            FileSource(image),
            client,
            PETS_POLICY,
            LogDriver(printed),
            audit=AuditLog(tmp_path / "audit.jsonl"),
            backoff=Backoff(attempts=3, base_seconds=0.5),
            sleep=waits.append,
        )
        [decision] = door.run_once()

    assert (decision.state, decision.code) == ("closed", "error")
    assert "service error" in decision.detail and "ConnectError" in decision.detail
    assert waits == [0.5, 1.0]
    assert door.door_state == "closed"
    assert "door open" not in printed.getvalue()


def test_an_explaining_door_keeps_the_map_beside_its_decision(
    argos_url: str, shared_dir: Path, tmp_path: Path
) -> None:
    image = shared_dir / "data" / "pets" / "dog" / DOGS[0]
    audit_path = tmp_path / "audit.jsonl"
    policy = PETS_POLICY.model_copy(update={"explain": True})

    decision = decide(argos_url, policy, image, AuditLog(audit_path))

    assert decision.state == "open"
    record = json.loads(audit_path.read_text())
    explanation = record["explanation"]
    assert explanation["label"] == record["top"][0]["label"]
    assert len(explanation["grid"]) == 7 and all(len(row) == 7 for row in explanation["grid"])
    assert "unknown" not in record, "the ImageNet model has no familiarity statistics"
