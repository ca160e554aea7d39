"""Python clients for the Argos inference service."""

from __future__ import annotations

from clients.http import (
    ArgosClient,
    ArgosClientError,
    ArgosRequestError,
    ArgosUnavailable,
    ClassifyResult,
    DetectResult,
    ModelCard,
)

__all__ = [
    "ArgosClient",
    "ArgosClientError",
    "ArgosRequestError",
    "ArgosUnavailable",
    "ClassifyResult",
    "DetectResult",
    "ModelCard",
]
