"""Training configuration: ``configs/default.yaml`` ← a ``--config`` file ← ``--key value`` flags.

``default.yaml`` holds every key with its default value and, in its end-of-line comment,
its type and meaning (``key: value  # (type) meaning``); those comments are also the
command-line help. :class:`TrainConfig` checks the merged values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"

_DOCUMENTED_KEY = re.compile(
    r"^(?P<key>[a-z_]+):\s*(?P<value>\S.*?)\s+#\s*\((?P<type>[^)]+)\)\s+(?P<meaning>\S.*)$"
)
_TOP_LEVEL_KEY = re.compile(r"^(?P<key>[A-Za-z_][\w-]*):")


class TrainConfig(BaseModel):
    """One training run, fully resolved: what ``config.yaml`` and the card record."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    backbone: str
    weights: str | None
    input_size: int | None = Field(ge=32)
    dropout: float = Field(ge=0, lt=1)

    data: str | None
    val_split: float = Field(ge=0, lt=1)
    test_split: float = Field(gt=0, lt=1)
    class_weights: bool
    seed: int
    deterministic: bool

    flip: Literal["horizontal", "vertical", "horizontal_and_vertical"] | None
    rotation: float = Field(ge=0, le=1)
    zoom: float = Field(ge=0, lt=1)
    translation: float = Field(ge=0, lt=1)
    contrast: float = Field(ge=0, le=1)
    brightness: float = Field(ge=0, le=1)

    batch_size: int = Field(ge=1)
    epochs_frozen: int = Field(ge=1)
    learning_rate: float = Field(gt=0)
    epochs_finetune: int = Field(ge=0)
    finetune_layers: int = Field(ge=0)
    finetune_learning_rate: float = Field(gt=0)
    monitor: Literal["val_loss", "val_accuracy"]
    patience: int = Field(ge=1)
    lr_patience: int = Field(ge=1)
    lr_factor: float = Field(gt=0, lt=1)
    min_learning_rate: float = Field(ge=0)
    schedule: Literal["plateau", "cosine"]
    warmup_epochs: int = Field(ge=0)
    label_smoothing: float = Field(ge=0, lt=1)
    weight_decay: float = Field(ge=0)
    test_time_flip: bool
    unknown_rate: float = Field(gt=0, lt=1)
    unknown_images: str | None
    unknown_skip: str | None = Field(pattern=r"^\d+(-\d+)?(,\d+(-\d+)?)*$")
    parity_images: int = Field(ge=1)
    overfit_window: int = Field(ge=1)

    strategy: Literal["auto", "mirrored", "default"]
    verbose: Literal["auto", 0, 1, 2]

    @model_validator(mode="after")
    def _no_validation_needs_a_fixed_schedule(self) -> TrainConfig:
        if self.val_split == 0 and self.schedule != "cosine":
            raise ValueError(
                "val_split 0 (no validation split) needs schedule: cosine; the plateau "
                "schedule lowers its rate on the validation loss"
            )
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(), sort_keys=False)

    def save(self, path: Path) -> Path:
        Path(path).write_text(self.to_yaml())
        return path


@dataclass(frozen=True)
class KeyDoc:
    """One documented key of a configuration file."""

    value: str
    type: str
    meaning: str


def read_yaml(path: Path) -> dict[str, Any]:
    values = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a mapping of configuration keys")
    return values


def documented_keys(path: Path) -> dict[str, KeyDoc]:
    """The ``key: value  # (type) meaning`` lines of a configuration file.

    Raises ``ValueError`` naming every top-level key that lacks such a comment.
    """
    docs: dict[str, KeyDoc] = {}
    undocumented = []
    for line in Path(path).read_text().splitlines():
        if not _TOP_LEVEL_KEY.match(line):
            continue
        match = _DOCUMENTED_KEY.match(line)
        if match is None:
            undocumented.append(line.split(":", 1)[0])
            continue
        docs[match["key"]] = KeyDoc(match["value"], match["type"], match["meaning"])
    if undocumented:
        raise ValueError(f"{path}: keys without a '# (type) meaning' comment: {undocumented}")
    return docs


def load_config(
    path: Path | None = None, overrides: Mapping[str, Any] | None = None
) -> TrainConfig:
    """Merge the defaults, the file at ``path`` and ``overrides`` (later wins)."""
    values = read_yaml(DEFAULT_CONFIG)
    if path is not None:
        values |= read_yaml(path)
    values |= dict(overrides or {})
    return TrainConfig.model_validate(values)


def default_name(data: str) -> str:
    """A store-safe model name from a data folder name (``Doggy Door`` → ``doggy-door``)."""
    name = re.sub(r"[^a-z0-9_.-]+", "-", Path(data).name.lower()).strip("-._")
    if not name:
        raise ValueError(f"cannot derive a model name from {data!r}; set `name`")
    return name
