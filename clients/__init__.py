"""Python clients for the Argos inference service."""

from __future__ import annotations

from clients.http import (
    ArgosClient,
    ArgosError,
    ArgosRequestError,
    ArgosUnavailable,
    ClassifyResult,
    DetectResult,
    ModelCard,
)

__all__ = [
    "ArgosClient",
    "ArgosError",
    "ArgosRequestError",
    "ArgosUnavailable",
    "ClassifyResult",
    "DetectResult",
    "ModelCard",
]
