"""The policy file and the verdict it gives on one frame."""

from __future__ import annotations

from pathlib import Path

import pytest

from clients.http import ClassifyResult, ModelCard
from clients.petdoor.policy import (
    Policy,
    PolicyError,
    check_model,
    check_names,
    frame_scores,
    frame_verdict,
    judge,
    load_policy,
)

EXAMPLE_POLICY = Path(__file__).parents[2] / "clients" / "petdoor" / "policy.example.yaml"


def classify_result(predictions: dict[str, float], groups: dict[str, float]) -> ClassifyResult:
    return ClassifyResult.model_validate(
        {
            "model": {"name": "imagenet-mobilenetv2", "version": "1"},
            "predictions": [
                {"label": label, "index": i, "score": score}
                for i, (label, score) in enumerate(predictions.items())
            ],
            "groups": [{"name": name, "score": score} for name, score in groups.items()],
        }
    )


def test_example_policy_file_is_valid() -> None:
    policy = load_policy(EXAMPLE_POLICY)

    assert policy == Policy(allow=["dog"], deny=["cat"])


def test_every_policy_field_is_documented_in_the_example() -> None:
    text = EXAMPLE_POLICY.read_text()

    for field in Policy.model_fields:
        assert f"\n{field}:" in text, field


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("allow: [dog]\nmin_scor: 0.5\n", "min_scor: Extra inputs are not permitted"),
        ("allow: []\n", "allow: List should have at least 1 item"),
        ("deny: [cat]\n", "allow: Field required"),
        ("allow: [dog]\nmin_score: 0\n", "min_score: Input should be greater than 0"),
        ("allow: [dog]\nmin_score: 1.5\n", "min_score: Input should be less than or equal to 1"),
        ("allow: [dog]\ndebounce_frames: 0\n", "debounce_frames: Input should be greater than"),
        ("allow: [dog]\nhold_open_seconds: -1\n", "hold_open_seconds: Input should be greater"),
        ("allow: [dog, cat]\ndeny: [cat]\n", "names both allowed and denied: cat"),
        ("allow: ['  ']\n", "names must not be empty"),
        ("allow: [dog]\nuse_detect: maybe\n", "use_detect: Input should be a valid boolean"),
        ("- dog\n", "must hold a mapping of keys, got list"),
        ("", "must hold a mapping of keys, got NoneType"),
        ("allow: [dog\n", "is not valid YAML"),
    ],
)
def test_bad_policy_file_is_rejected_with_a_clear_message(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(content)

    with pytest.raises(PolicyError) as caught:
        load_policy(path)

    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_missing_policy_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read policy file .*nope.yaml"):
        load_policy(tmp_path / "nope.yaml")


def test_group_score_makes_a_frame_positive() -> None:
    policy = Policy(allow=["dog"], deny=["cat"], min_score=0.5)
    result = classify_result({"beagle": 0.4, "basset": 0.3}, {"dog": 0.85, "cat": 0.01})

    verdict = judge(policy, frame_scores(result))

    assert (verdict.kind, verdict.detail) == ("allow", "dog 0.85")


def test_denied_name_wins_over_an_allowed_one() -> None:
    policy = Policy(allow=["dog"], deny=["cat"], deny_score=0.3)
    result = classify_result({"beagle": 0.6}, {"dog": 0.6, "cat": 0.35})

    verdict = judge(policy, frame_scores(result))

    assert (verdict.kind, verdict.code) == ("deny", "forced_shut")


def test_low_confidence_is_not_positive() -> None:
    policy = Policy(allow=["bo"], deny=["not_bo"], min_score=0.7, deny_score=0.5)
    result = classify_result({"bo": 0.6, "not_bo": 0.4}, {})

    verdict = judge(policy, frame_scores(result))

    assert (verdict.kind, verdict.code) == ("none", "low_confidence")
    assert verdict.detail == "best allowed bo 0.60 < 0.70"


def test_label_outside_the_top_k_counts_as_zero() -> None:
    policy = Policy(allow=["beagle"], min_score=0.1)
    result = classify_result({"tabby": 0.9}, {})

    assert judge(policy, frame_scores(result)).kind == "none"


def test_names_the_model_lacks_are_refused_with_its_groups_and_closest_labels() -> None:
    labels = [f"label_{i}" for i in range(40)] + ["tabby", "tiger_cat"]
    card = ModelCard(name="m", version="2", labels=labels, label_groups={"cat": [40, 41]})
    check_names(Policy(allow=["cat"], deny=["tabby"]), card)
    with pytest.raises(PolicyError) as refused:
        check_names(Policy(allow=["cat"], deny=["taby"]), card)
    message = str(refused.value)
    assert "model m 2 has no label or group named taby; its groups are cat" in message
    assert "42 labels (closest: tabby; GET /model lists them all)" in message


def test_an_unknown_frame_is_never_allowed_and_says_why() -> None:
    policy = Policy(allow=["dog"], deny=["cat"], min_score=0.5)
    sure_dog = classify_result({"beagle": 0.97}, {"dog": 0.99, "cat": 0.01})
    unknown = sure_dog.model_copy(update={"familiarity": 0.0, "unknown": True})
    familiar = sure_dog.model_copy(update={"familiarity": 0.4, "unknown": False})

    assert frame_verdict(policy, familiar).kind == "allow"
    verdict = frame_verdict(policy, unknown)
    assert (verdict.kind, verdict.code) == ("none", "unknown")
    assert "familiarity 0.00" in verdict.detail


def test_a_denied_name_still_shuts_the_door_on_an_unknown_frame() -> None:
    policy = Policy(allow=["dog"], deny=["cat"], deny_score=0.3)
    result = classify_result({"tabby": 0.9}, {"dog": 0.05, "cat": 0.9})
    unknown = result.model_copy(update={"familiarity": 0.01, "unknown": True})

    assert frame_verdict(policy, unknown).code == "forced_shut"


def test_explain_needs_a_model_with_backbone_and_head_graphs() -> None:
    card = ModelCard(name="pets", version="1", labels=["cat", "dog"])
    policy = Policy(allow=["dog"], explain=True)

    with pytest.raises(PolicyError, match="explain: true needs a model with backbone and head"):
        check_model(policy, card)
    check_model(policy, card.model_copy(update={"dense": {"stride": 32}}))


def test_a_stricter_door_also_refuses_frames_below_its_familiarity() -> None:
    policy = Policy(allow=["dog"], min_familiarity=0.1)
    sure_dog = classify_result({"beagle": 0.97}, {"dog": 0.99})
    rare = sure_dog.model_copy(update={"familiarity": 0.05, "unknown": False})
    usual = sure_dog.model_copy(update={"familiarity": 0.5, "unknown": False})

    assert frame_verdict(policy, usual).kind == "allow"
    verdict = frame_verdict(policy, rare)
    assert (verdict.kind, verdict.code, verdict.detail) == (
        "none",
        "unfamiliar",
        "familiarity 0.05 < 0.10",
    )
    assert frame_verdict(policy, sure_dog).kind == "allow", "a model without familiarity"
