"""Service settings: one class, read once from ``ARGOS_*`` environment variables."""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL = "imagenet-mobilenetv2"


class Settings(BaseSettings):
    """Runtime settings of the Argos service."""

    model_config = SettingsConfigDict(env_prefix="ARGOS_", protected_namespaces=())

    model: str = Field(
        f"{DEFAULT_MODEL}:latest", description="BentoML model-store tag of the model to serve"
    )
    max_upload_bytes: int = Field(20 * 1024 * 1024, gt=0, le=512 * 1024 * 1024)
    max_image_pixels: int = Field(
        50_000_000, gt=0, le=500_000_000, description="decompression-bomb guard"
    )
    api_workers: int = Field(1, ge=1, le=64, description="processes decoding and preprocessing")
    api_threads: int = Field(2, ge=1, le=64, description="preprocessing threads per API worker")
    batch_max_size: int = Field(32, ge=2, le=1024, description="largest adaptive batch")
    batch_max_latency_ms: int = Field(
        5000, ge=1, le=60_000, description="queue wait after which a request is shed (503)"
    )
    inference_threads: int = Field(
        0,
        ge=0,
        le=256,
        description="onnxruntime intra-op threads; 0: half the cores, leaving the rest to "
        "decoding and preprocessing in the API workers",
    )
    providers: list[str] | None = Field(
        None, description="onnxruntime providers in order; default: CUDA when a GPU is present"
    )
    detect_chunk_size: int = Field(32, ge=1, le=1024, description="windows per inference call")
    detect_max_windows: int = Field(2048, ge=1, description="largest window count per request")

    @property
    def onnxruntime_threads(self) -> int:
        """The intra-op thread count to give onnxruntime."""
        return self.inference_threads or max(1, len(os.sched_getaffinity(0)) // 2)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
