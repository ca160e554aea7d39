"""onnxruntime sessions: CUDA when a GPU is really there, CPU otherwise, quietly."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.devices import gpu_count

logger = logging.getLogger("argos.runtime")

_GPU_PROVIDERS = ("CUDAExecutionProvider",)


def choose_providers(requested: Sequence[str] | None = None) -> list[str]:
    """The providers to use, in order.

    Asking onnxruntime-gpu for CUDA on a machine without a GPU logs a screen of errors
    before it falls back, so CUDA is only requested when the driver reports a device.
    """
    available = ort.get_available_providers()
    if requested:
        missing = [name for name in requested if name not in available]
        if missing:
            raise ValueError(f"onnxruntime providers {missing} are not available; have {available}")
        return list(requested)
    wanted = [*_GPU_PROVIDERS] if gpu_count() > 0 else []
    return [name for name in wanted if name in available] + ["CPUExecutionProvider"]


def create_session(
    path: Path, *, providers: Sequence[str] | None = None, threads: int = 0, device_id: int = 0
) -> ort.InferenceSession:
    """An inference session with full graph optimisation; GPU providers run on
    ``device_id``."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    chosen = [
        (name, {"device_id": device_id}) if name in _GPU_PROVIDERS else name
        for name in choose_providers(providers)
    ]
    session = ort.InferenceSession(str(path), sess_options=options, providers=chosen)
    logger.debug("%s: onnxruntime providers %s", Path(path).name, session.get_providers())
    return session


class OnnxModel:
    """One ONNX graph with a single input; its first output is the main one (probabilities or
    features), a classifier may add others (a familiarity distance)."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.output_names = [output.name for output in session.get_outputs()]
        self.output_name = self.output_names[0]

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        providers: Sequence[str] | None = None,
        threads: int = 0,
        device_id: int = 0,
    ) -> OnnxModel:
        return cls(create_session(path, providers=providers, threads=threads, device_id=device_id))

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    @property
    def on_gpu(self) -> bool:
        return any(name in _GPU_PROVIDERS for name in self.providers)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch; uint8 pixels are cast to the graph's float32 input."""
        return self.run_outputs(batch, [self.output_name])[0]

    def run_outputs(self, batch: np.ndarray, names: Sequence[str]) -> list[np.ndarray]:
        """Run one batch for the named outputs."""
        feed = np.ascontiguousarray(batch, dtype=np.float32)
        return self.session.run(list(names), {self.input_name: feed})

    def run_chunked(self, batch: np.ndarray, chunk_size: int) -> np.ndarray:
        """Run a large batch in calls of at most ``chunk_size`` items."""
        if len(batch) == 0:
            raise ValueError("cannot run an empty batch")
        parts = [self.run(batch[i : i + chunk_size]) for i in range(0, len(batch), chunk_size)]
        return np.concatenate(parts, axis=0)
