"""Service settings: one class, read once from ``ARGOS_*`` environment variables."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.devices import gpu_count
from service.preprocessing import DEFAULT_MAX_DECODED_BYTES

DEFAULT_MODEL = "imagenet-mobilenetv2"
Keys = Annotated[list[str], NoDecode]
ADMISSION_SHARE_OF_QUEUE_TIMEOUT = 0.8


class Settings(BaseSettings):
    """Runtime settings of the Argos service.

    Sizes of the serving core default from the machine: on CPU one worker process per core
    with one onnxruntime thread each and no batching delay (batching saves no compute
    there); on GPU one worker per GPU that waits briefly for company to fill batches.
    """

    model_config = SettingsConfigDict(env_prefix="ARGOS_", protected_namespaces=())

    model: str = Field(
        f"{DEFAULT_MODEL}:latest", description="BentoML model-store tag of the model to serve"
    )
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="BentoML store tags of the models to serve, comma-separated; the first is "
        "the default. Empty: ARGOS_MODEL alone",
    )
    control_dir: Path | None = Field(
        None,
        description="folder under which each server makes a private folder (mode 0700) where "
        "its workers agree on the loaded models; refused when another user owns it or others "
        "may write to it without the sticky bit; default: the temporary folder",
    )
    max_upload_bytes: int = Field(20 * 1024 * 1024, gt=0, le=512 * 1024 * 1024)
    max_buffered_bytes: int = Field(
        256 * 1024 * 1024,
        gt=0,
        description="bytes of request bodies a worker holds at once (read, or being read, and "
        "not yet answered); more are refused with 503 and Retry-After",
    )
    max_image_pixels: int = Field(
        50_000_000, gt=0, le=500_000_000, description="decompression-bomb guard"
    )
    max_decoded_bytes: int = Field(
        DEFAULT_MAX_DECODED_BYTES,
        gt=0,
        description="decoded bytes one upload may cost: width x height x bands x bytes per "
        "sample of the frame read, checked before decoding",
    )
    inline_max_decoded_bytes: int = Field(
        8 << 20,
        ge=0,
        description="a lone upload on an idle worker whose decoded frame is at most this "
        "many bytes is preprocessed and run on the event loop, without thread hops (it "
        "holds the loop for one small image's work); 0: always use the threads",
    )
    workers: int = Field(0, ge=0, le=64, description="worker processes; 0: one per core or GPU")
    instances: int = Field(
        1, ge=1, le=64, description="runner threads per model and worker, sharing one queue"
    )
    preprocess_threads: int = Field(
        2, ge=1, le=64, description="decode and preprocessing threads per worker"
    )
    inference_threads: int = Field(
        0, ge=0, le=256, description="onnxruntime intra-op threads; 0: the cores per worker"
    )
    providers: list[str] | None = Field(
        None, description="onnxruntime providers in order; default: CUDA when a GPU is present"
    )
    max_batch_size: int = Field(0, ge=0, le=1024, description="largest batch; 0: 8 CPU, 32 GPU")
    max_queue_delay_us: int = Field(
        -1,
        ge=-1,
        le=1_000_000,
        description="longest a request waits for company before its batch runs (microseconds), "
        "and only while other admitted requests are being preprocessed; 0: never wait; -1: 0 "
        "on CPU, 2000 on GPU",
    )
    max_inflight: int = Field(
        64,
        ge=1,
        le=100_000,
        description="images (or detection requests) a worker holds at once once their bodies "
        "are read (preprocessing, queued, running), a hard cap beside the admission budget; "
        "more are refused with 503 and Retry-After",
    )
    queue_timeout_ms: int = Field(
        1000,
        ge=1,
        le=600_000,
        description="longest a request waits in the inference queue before it is refused "
        "with 503 and Retry-After",
    )
    drain_timeout_s: float = Field(
        30,
        gt=0,
        le=600,
        description="on SIGTERM, how long accepted requests may take to finish; work still "
        "queued then is answered 503",
    )
    request_timeout_s: float = Field(
        60, gt=0, le=3600, description="longest one request may take end to end (504 after)"
    )
    access_log: bool = Field(False, description="log one line per request")
    detect_chunk_size: int = Field(
        8, ge=1, le=1024, description="windows per inference turn of a detection request"
    )
    detect_max_windows: int = Field(
        512,
        ge=1,
        description="largest window count per request (about 5 s of exact mode on one core)",
    )

    # Who may call what (service/keys.py; README "Security"): keys comma-separated, or in a
    # file of one key a line read again when it changes. No infer keys: inference is open;
    # no admin keys: model control is off. A scope with a key file set is never open.
    infer_keys: Keys = Field(default_factory=list, description="infer-scope keys", repr=False)
    infer_keys_file: Path | None = Field(None, description="file of infer-scope keys")
    admin_keys: Keys = Field(default_factory=list, description="admin-scope keys", repr=False)
    admin_keys_file: Path | None = Field(None, description="file of admin-scope keys")
    api_key_header: str = Field(
        "X-API-Key",
        description="header that may carry the key instead of Authorization: Bearer; empty: "
        "Authorization only",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="origins of web pages allowed to call the API from a browser, "
        "comma-separated; empty: no CORS headers",
    )

    idle_timeout_s: float = Field(
        10,
        gt=0,
        le=3600,
        description="a connection that sends nothing this long is closed (also the keep-alive "
        "timeout between requests; above the longest Retry-After, 4 s)",
    )
    head_timeout_s: float = Field(
        10, gt=0, le=3600, description="longest a request head may take to arrive (408 after)"
    )
    max_header_line_bytes: int = Field(
        16 * 1024,
        ge=1024,
        le=1024 * 1024,
        description="longest header line, and longest URL (431, 414 above)",
    )
    max_head_bytes: int = Field(
        64 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="largest request head: request line and headers (431 above)",
    )
    max_headers: int = Field(100, ge=1, le=10_000, description="most headers a request has (431)")
    body_timeout_s: float = Field(
        60, gt=0, le=3600, description="longest a request body may take to arrive (408 after)"
    )
    min_body_rate: int = Field(
        16 * 1024,
        ge=0,
        description="slowest a request body may arrive (bytes/s, averaged from its start once "
        "ARGOS_BODY_RATE_GRACE_S have passed; 408 below); 0: no minimum",
    )
    body_rate_grace_s: float = Field(
        5, ge=0, le=3600, description="seconds of a body before its rate is checked"
    )
    linger_s: float = Field(
        2,
        ge=0,
        le=60,
        description="after a reply sent before the request body arrived, how long the rest "
        "of the body is read and discarded before the connection closes",
    )

    drain_accept_s: float = Field(
        1,
        ge=0,
        le=60,
        description="on SIGTERM, how long new connections are still accepted at least, and "
        "their requests answered 503 with Connection: close; then until the listen backlog "
        "is empty (at most ARGOS_DRAIN_TIMEOUT_S more)",
    )

    @field_validator("models", "infer_keys", "admin_keys", "cors_origins", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @property
    def model_tags(self) -> list[str]:
        """The tags to serve, the default first."""
        return self.models or [self.model]

    @property
    def uses_gpu(self) -> bool:
        """Whether sessions will run on CUDA (asked for, or a GPU is present)."""
        if self.providers is not None:
            return "CUDAExecutionProvider" in self.providers
        return gpu_count() > 0

    @property
    def worker_count(self) -> int:
        """Worker processes: as set, else one per GPU, else one per usable core."""
        if self.workers:
            return self.workers
        return gpu_count() or len(os.sched_getaffinity(0))

    @property
    def onnxruntime_threads(self) -> int:
        """Intra-op threads per session: as set, else the usable cores per worker."""
        if self.inference_threads:
            return self.inference_threads
        return max(1, len(os.sched_getaffinity(0)) // self.worker_count)

    @property
    def admission_budget_s(self) -> float:
        """Expected runner seconds of work a worker admits: most of the queue timeout, the
        rest left for preprocessing, so that what is admitted is run in time."""
        return ADMISSION_SHARE_OF_QUEUE_TIMEOUT * self.queue_timeout_ms / 1000

    @property
    def batch_size(self) -> int:
        return self.max_batch_size or (32 if self.uses_gpu else 8)

    @property
    def queue_delay_s(self) -> float:
        delay_us = self.max_queue_delay_us
        if delay_us < 0:
            delay_us = 2000 if self.uses_gpu else 0
        return delay_us / 1e6

    model_load_timeout_s: float = Field(
        45,
        gt=0,
        le=3600,
        description="longest a load or unload request waits for every worker to apply it "
        "(503 models_changing after; the change goes on); below ARGOS_REQUEST_TIMEOUT_S, so "
        "that the request ends with this answer rather than BentoML's 504",
    )

    @model_validator(mode="after")
    def _model_load_within_request(self) -> Settings:
        if self.model_load_timeout_s >= self.request_timeout_s:
            raise ValueError(
                f"ARGOS_MODEL_LOAD_TIMEOUT_S ({self.model_load_timeout_s:g}) must be below "
                f"ARGOS_REQUEST_TIMEOUT_S ({self.request_timeout_s:g})"
            )
        return self

    # The Open Inference Protocol over gRPC (service/grpc; README "gRPC").
    grpc_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="port of the gRPC inference service (inference.GRPCInferenceService), "
        "bound by every worker; unset: no gRPC",
    )
    grpc_host: str = Field("0.0.0.0", description="address the gRPC inference service listens on")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
