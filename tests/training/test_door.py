"""The offline pet-door check uses the client's own policy and door logic."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from clients.petdoor.policy import Policy, load_policy
from service.card import ModelCard, Preprocessing
from tests.service.tiny_model import tiny_familiarity
from training import store
from training.door import admitted_files, classify_reply, opens_door, outcomes_from_predictions

LABELS = ["beagle", "pug", "tabby", "lynx", "toaster"]
CARD = ModelCard(
    name="toy",
    version="1",
    labels=LABELS,
    label_groups={"dog": [0, 1], "cat": [2, 3]},
    preprocessing=Preprocessing(input_size=(8, 8), resize="squash"),
    backbone="MobileNetV2",
)
PETS_POLICY = Path(__file__).parents[2] / "clients" / "petdoor" / "policy.pets.yaml"
POLICY = Policy(allow=["dog"], deny=["cat"], min_score=0.5, deny_score=0.3, debounce_frames=1)


def test_reply_has_the_top_labels_and_the_group_sums() -> None:
    reply = classify_reply(np.array([0.3, 0.3, 0.1, 0.1, 0.2]), CARD, k=2)

    assert [p.label for p in reply.predictions] == ["beagle", "pug"]
    assert {g.name: round(g.score, 6) for g in reply.groups} == {"dog": 0.6, "cat": 0.2}


def test_a_dog_opens_a_fresh_door_and_a_cat_or_a_doubt_does_not() -> None:
    assert opens_door(np.array([0.3, 0.3, 0.1, 0.1, 0.2]), CARD, POLICY)
    # The dog group wins, but the cat group reaches deny_score: forced shut.
    assert not opens_door(np.array([0.3, 0.3, 0.2, 0.15, 0.05]), CARD, POLICY)
    assert not opens_door(np.array([0.2, 0.2, 0.1, 0.1, 0.4]), CARD, POLICY)


def test_debounce_applies_to_each_photo_as_one_frame() -> None:
    two_frames = POLICY.model_copy(update={"debounce_frames": 2})

    assert not opens_door(np.array([0.5, 0.4, 0.0, 0.0, 0.1]), CARD, two_frames)


def test_predictions_file_is_judged_image_by_image(tmp_path: Path) -> None:
    path = tmp_path / "predictions.csv"
    rows = ["file,label," + ",".join(LABELS)]
    rows += ["c1.jpg,tabby,0.05,0.05,0.8,0.05,0.05", "c2.jpg,tabby,0.6,0.2,0.1,0.0,0.1"]
    rows += ["d1.jpg,beagle,0.7,0.2,0.0,0.0,0.1", "d2.jpg,beagle,0.2,0.1,0.0,0.0,0.7"]
    path.write_text("\n".join(rows) + "\n")

    outcomes = outcomes_from_predictions(path, CARD, POLICY)

    assert {name: (o.images, o.admitted) for name, o in outcomes.items()} == {
        "beagle": (2, ["d1.jpg"]),
        "tabby": (2, ["c2.jpg"]),
    }


def test_an_unknown_frame_never_opens_the_door() -> None:
    card = CARD.model_copy(update={"familiarity": tiny_familiarity()})
    dog = np.array([0.5, 0.45, 0.0, 0.0, 0.05])

    assert opens_door(dog, card, POLICY, distance=10.0)  # familiarity 0.8
    assert not opens_door(dog, card, POLICY, distance=60.0)  # beyond every held-out image
    reply = classify_reply(dog, card, k=2, distance=60.0)
    assert (reply.familiarity, reply.unknown) == (0.0, True)


def other_things(shared_dir: Path) -> list[Path]:
    """The shared ImageNet photos that are neither dogs nor cats (all but 151-293)."""
    files = sorted((shared_dir / "data" / "imagenet_samples").iterdir())
    return files[:151] + files[294:]


PETS_TAG = os.environ.get("ARGOS_PETS_MODEL", "pets:latest")
SHOWS_A_PET = {"n03218198_dogsled.jpg", "n04409515_tennis_ball.jpg", "n04209239_shower_curtain.jpg"}
"""ImageNet photos of other classes in which a dog or a cat is plainly in view."""


NEITHER = ["bird.bmp", "dragonfly.bmp", "grace_hopper.bmp", "hot_dog.jpg", "kite_and_cold.jpg",
           "owl.jpg", "parrot.jpg", "sunflower.bmp"]  # fmt: skip
"""The shared photos that show neither a dog nor a cat."""
needs_pets = pytest.mark.skipif(
    not store.exists(PETS_TAG), reason=f"{PETS_TAG} (training/configs/pets.yaml) is not trained"
)


@pytest.mark.slow
@needs_pets
def test_the_pets_door_opens_for_none_of_the_other_things(shared_dir: Path) -> None:
    """The pets model and its door policy: of the ImageNet photos that are neither dogs nor
    cats, at least 80 % are unknown, and none opens the door."""
    policy = load_policy(PETS_POLICY).model_copy(update={"debounce_frames": 1})
    photos = [path for path in other_things(shared_dir) if path.name not in SHOWS_A_PET]
    outcome = admitted_files(store.artifact_path(PETS_TAG), policy, photos)

    assert outcome.images == 854
    assert len(outcome.unknown) >= 0.8 * outcome.images
    assert outcome.admitted == []


@needs_pets
def test_the_pets_model_calls_the_shared_photos_of_other_things_unknown(images: Path) -> None:
    policy = load_policy(PETS_POLICY)
    outcome = admitted_files(store.artifact_path(PETS_TAG), policy, [images / n for n in NEITHER])

    assert sorted(Path(file).name for file in outcome.unknown) == sorted(NEITHER)
    assert outcome.admitted == []
