"""onnxruntime sessions and the choice of providers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.devices import gpu_count
from service.inference.sessions import OnnxModel, choose_providers
from tests.service.tiny_model import write_tiny_classifier


@pytest.fixture()
def tiny(tmp_path: Path) -> OnnxModel:
    return OnnxModel.load(write_tiny_classifier(tmp_path / "tiny.onnx"))


def test_cpu_only_host_gets_cpu_provider_only() -> None:
    if gpu_count() > 0:
        pytest.skip("this host has a GPU")
    assert choose_providers() == ["CPUExecutionProvider"]


def test_unavailable_provider_is_refused() -> None:
    with pytest.raises(ValueError, match="NoSuchExecutionProvider"):
        choose_providers(["NoSuchExecutionProvider"])


def test_uint8_batch_runs_and_ranks_the_dominant_colour(tiny: OnnxModel) -> None:
    batch = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    batch[0, ..., 2] = 255
    batch[1, ..., 0] = 255
    probabilities = tiny.run(batch)
    assert probabilities.shape == (2, 3)
    assert probabilities.argmax(axis=1).tolist() == [2, 0]
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-6)


def test_chunked_run_matches_one_call(tiny: OnnxModel) -> None:
    batch = np.random.default_rng(0).integers(0, 256, (10, 8, 8, 3), dtype=np.uint8)
    assert np.allclose(tiny.run_chunked(batch, chunk_size=3), tiny.run(batch), atol=1e-7)
