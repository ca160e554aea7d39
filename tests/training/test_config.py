"""Training configuration: documented keys, merging, overrides from the command line."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest
import yaml

from training.cli import build_parser, config_from_args
from training.config import (
    CONFIG_DIR,
    DEFAULT_CONFIG,
    TrainConfig,
    default_name,
    documented_keys,
    load_config,
)


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_key_of_every_shipped_config_is_documented_and_valid(path: Path) -> None:
    docs = documented_keys(path)

    assert set(docs) == set(yaml.safe_load(path.read_text()))
    assert all(doc.type and doc.meaning for doc in docs.values())
    load_config(path)


def test_default_config_covers_exactly_the_config_fields() -> None:
    assert list(documented_keys(DEFAULT_CONFIG)) == list(TrainConfig.model_fields)


def test_undocumented_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("epochs_frozen: 2  # (int) documented\nseed: 3\n")

    with pytest.raises(ValueError, match=r"\['seed'\]"):
        documented_keys(path)


def test_file_overrides_defaults_and_overrides_win(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("epochs_frozen: 7  # (int) x\nseed: 3  # (int) y\n")

    config = load_config(path, {"seed": 9})

    assert (config.epochs_frozen, config.seed) == (7, 9)
    assert config.backbone == load_config().backbone


def test_unknown_and_invalid_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(pydantic.ValidationError, match="epochs_frozn"):
        load_config(None, {"epochs_frozn": 2})
    with pytest.raises(pydantic.ValidationError, match="monitor"):
        load_config(None, {"monitor": "loss"})
    with pytest.raises(pydantic.ValidationError, match="val_split 0 .* needs schedule: cosine"):
        load_config(None, {"val_split": 0, "schedule": "plateau"})
    assert load_config(None, {"val_split": 0, "schedule": "cosine"}).val_split == 0


def test_saved_config_reloads_to_the_same_config(tmp_path: Path) -> None:
    config = load_config(CONFIG_DIR / "pets.yaml", {"input_size": 96})

    saved = config.save(tmp_path / "config.yaml")

    assert load_config(saved) == config


def test_command_line_flags_override_the_config_file() -> None:
    args = build_parser().parse_args(
        [
            "train",
            "--config",
            str(CONFIG_DIR / "pets.yaml"),
            "--epochs-finetune",
            "0",
            "--weights",
            "null",
            "--flip",
            "vertical",
            "--class-weights",
            "false",
        ]
    )

    config = config_from_args(args)

    assert config.name == "pets"
    assert (config.epochs_finetune, config.weights, config.flip) == (0, None, "vertical")
    assert config.class_weights is False
    assert config.epochs_frozen == 3


def test_default_name_is_store_safe() -> None:
    assert default_name("/data/Doggy Door") == "doggy-door"
    assert default_name("pets") == "pets"
