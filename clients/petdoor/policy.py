"""Door policy: the YAML file's schema and the per-frame verdict it gives."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from clients.http import ClassifyResult, DetectResult, ModelCard

DetectParam = int | float | str | bool | list[int | float | str]


class PolicyError(ValueError):
    """The policy file is missing, not YAML, or does not match the schema."""


class Policy(BaseModel):
    """Who may enter; every field is documented in policy.example.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allow: list[str] = Field(min_length=1)
    deny: list[str] = []
    min_score: float = Field(0.5, gt=0.0, le=1.0)
    deny_score: float = Field(0.3, gt=0.0, le=1.0)
    debounce_frames: int = Field(2, ge=1)
    debounce_max_gap_seconds: float = Field(5.0, gt=0.0)
    hold_open_seconds: float = Field(10.0, ge=0.0)
    top_k: int | None = Field(None, ge=1)
    use_detect: bool = False
    detect_params: dict[str, DetectParam] = {}
    explain: bool = False
    min_familiarity: float = Field(0.0, ge=0.0, lt=1.0)

    @field_validator("allow", "deny")
    @classmethod
    def _names(cls, names: list[str]) -> list[str]:
        cleaned = [name.strip() for name in names]
        if any(not name for name in cleaned):
            raise ValueError("label and group names must not be empty")
        return cleaned

    @model_validator(mode="after")
    def _disjoint(self) -> Policy:
        both = sorted(set(self.allow) & set(self.deny))
        if both:
            raise ValueError(f"names both allowed and denied: {', '.join(both)}")
        return self


def load_policy(path: Path) -> Policy:
    """Read and validate a policy file, raising `PolicyError` with the file name."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        kind = type(raw).__name__
        raise PolicyError(f"policy file {path} must hold a mapping of keys, got {kind}")
    try:
        return Policy.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise PolicyError(f"invalid policy file {path}: {problems}") from exc


_LABELS_LISTED = 30


def check_model(policy: Policy, card: ModelCard) -> None:
    """Raise `PolicyError` when the policy asks for what the model cannot give."""
    check_names(policy, card)
    if policy.explain and card.dense is None:
        raise PolicyError(
            f"explain: true needs a model with backbone and head graphs; {card.name} "
            f"{card.version} has none: set explain: false or serve such a model"
        )


def check_names(policy: Policy, card: ModelCard) -> None:
    """Raise `PolicyError` when the policy names a label or group the model does not have."""
    known = set(card.labels) | set(card.label_groups)
    unknown = [name for name in [*policy.allow, *policy.deny] if name not in known]
    if not unknown:
        return
    groups = ", ".join(card.label_groups) or "none"
    if len(card.labels) <= _LABELS_LISTED:
        labels = ", ".join(card.labels)
    else:
        close = {m for n in unknown for m in difflib.get_close_matches(n, card.labels, 5, 0.6)}
        hint = f"closest: {', '.join(sorted(close))}; " if close else ""
        labels = f"{len(card.labels)} labels ({hint}GET /model lists them all)"
    raise PolicyError(
        f"model {card.name} {card.version} has no label or group named {', '.join(unknown)}; "
        f"its groups are {groups}; its labels are {labels}"
    )


@dataclass(frozen=True)
class Verdict:
    """What one analysed frame says, before debounce and hold-open are applied."""

    kind: Literal["allow", "deny", "none"]
    code: str
    detail: str


def frame_scores(
    result: ClassifyResult, detections: DetectResult | None = None
) -> dict[str, float]:
    """Score per label and group name; the highest one wins when a name appears twice."""
    scores: dict[str, float] = {}
    entries = [(p.label, p.score) for p in result.predictions]
    entries += [(g.name, g.score) for g in result.groups or []]
    if detections is not None:
        entries += [(d.label, d.score) for d in detections.detections]
    for name, score in entries:
        scores[name] = max(score, scores.get(name, 0.0))
    return scores


def judge(policy: Policy, scores: dict[str, float]) -> Verdict:
    """Apply the policy's thresholds to one frame's scores."""
    denied = [
        (name, scores[name]) for name in policy.deny if scores.get(name, 0.0) >= policy.deny_score
    ]
    if denied:
        name, score = max(denied, key=lambda item: item[1])
        return Verdict("deny", "forced_shut", f"{name} {score:.2f} >= {policy.deny_score:.2f}")
    name = max(policy.allow, key=lambda n: scores.get(n, 0.0))
    score = scores.get(name, 0.0)
    if score >= policy.min_score:
        return Verdict("allow", "allowed", f"{name} {score:.2f}")
    return Verdict(
        "none", "low_confidence", f"best allowed {name} {score:.2f} < {policy.min_score:.2f}"
    )


def frame_verdict(
    policy: Policy, result: ClassifyResult, detections: DetectResult | None = None
) -> Verdict:
    """The verdict of one analysed frame. A frame the model answers ``unknown`` (unlike
    anything it was trained on), or less familiar than ``min_familiarity``, is never
    allowed, whatever its scores: its labels are only the nearest the model knows. A denied
    name still shuts the door."""
    verdict = judge(policy, frame_scores(result, detections))
    if verdict.kind == "deny" or result.familiarity is None:
        return verdict
    if result.unknown:
        detail = f"unlike anything the model was trained on (familiarity {result.familiarity:.2f})"
        return Verdict("none", "unknown", detail)
    if result.familiarity < policy.min_familiarity:
        detail = f"familiarity {result.familiarity:.2f} < {policy.min_familiarity:.2f}"
        return Verdict("none", "unfamiliar", detail)
    return verdict
