"""Prometheus metrics of Argos, served with BentoML's own at ``GET /metrics``.

``bentoml.metrics`` wraps prometheus-client so that metrics from every worker process are
aggregated.
"""

from __future__ import annotations

import bentoml

REJECTED = bentoml.metrics.Counter(
    name="argos_rejected_requests",
    documentation="Requests refused with a 4xx or 503, by endpoint and error code",
    labelnames=["endpoint", "error"],
)
FAILED = bentoml.metrics.Counter(
    name="argos_failed_requests",
    documentation="Requests answered 500 after an unexpected error, by endpoint",
    labelnames=["endpoint"],
)
AUTH_REFUSALS = bentoml.metrics.Counter(
    name="argos_auth_refusals",
    documentation="Requests refused for their key or origin, by route template and reason "
    "(missing_key, unknown_key, wrong_scope, control_off, cross_site, not_json)",
    labelnames=["route", "reason"],
)
ADMITTED = bentoml.metrics.Counter(
    name="argos_admitted_requests",
    documentation="Inference requests admitted by a worker's admission control",
)
INFLIGHT = bentoml.metrics.Gauge(
    name="argos_inflight_requests",
    documentation="Units of inference work the workers hold now (images being preprocessed, "
    "queued or run, and detection jobs): what admission control counts",
    multiprocess_mode="livesum",
)
TOP1 = bentoml.metrics.Counter(
    name="argos_top1_predictions",
    documentation="Top-1 label of each classified image: a drift signal",
    labelnames=["model", "label"],
)
UNKNOWN = bentoml.metrics.Counter(
    name="argos_unknown_images",
    documentation="Images answered unknown (unlike the model's training data): a drift signal",
    labelnames=["model"],
)
STAGE_SECONDS = bentoml.metrics.Histogram(
    name="argos_stage_seconds",
    documentation="Time spent per request in each stage",
    labelnames=["endpoint", "stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

BATCH_SIZE = bentoml.metrics.Histogram(
    name="argos_batch_size",
    documentation="Requests per onnxruntime call of single-image inference",
    labelnames=["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)


def observe_stages(endpoint: str, **seconds: float) -> None:
    """Record the time each named stage of one request took."""
    for stage, value in seconds.items():
        STAGE_SECONDS.labels(endpoint=endpoint, stage=stage).observe(value)


SERVED_VERSIONS = bentoml.metrics.Gauge(
    name="argos_served_versions",
    documentation="Versions of each model a worker serves; the least over the live workers",
    labelnames=["model"],
    multiprocess_mode="livemin",
)
READY = bentoml.metrics.Gauge(
    name="argos_ready",
    documentation="1 while every worker serves its models and is not draining, as of its "
    "start-up, drain or last readiness check (GET /readyz); the least over the live workers",
    multiprocess_mode="livemin",
)
