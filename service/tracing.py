"""OpenTelemetry spans only where they can go somewhere.

BentoML wraps every request in OpenTelemetry's ASGI middleware whether or not tracing is
configured: a server span, a span per body message received and sent, their attributes and
context switches, about 0.4 core-ms of a worker's event loop per request. Without an
exporter no span ever leaves the worker, so Argos then excludes every URL from that
middleware through BentoML's own ``tracing.excluded_urls``. With an exporter configured for
the service (``services.argos.tracing.exporter_type``, in ``BENTOML_CONFIG`` or
``BENTOML_CONFIG_OVERRIDES``), BentoML's tracing configuration applies as given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bentoml._internal.configuration.containers import BentoMLContainer

EVERY_URL = ".*"
"""A pattern that OpenTelemetry's exclude list finds in any URL."""


def tracing_options(service: str, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``tracing`` options ``service`` declares: none when the BentoML configuration
    (default: the one loaded from the environment) names an exporter for it, else every URL
    excluded from request tracing."""
    if config is None:
        config = BentoMLContainer.config.get()
    tracing = (config.get("services") or {}).get(service, {}).get("tracing") or {}
    return {} if tracing.get("exporter_type") else {"excluded_urls": EVERY_URL}
