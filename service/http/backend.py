"""What the HTTP routes need from the running service, and how they get it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Protocol, TypeVar

import bentoml
import numpy as np
from fastapi import Depends

from service.card import ModelCard
from service.settings import Settings

T = TypeVar("T")


class Backend(Protocol):
    """The running ``Argos`` service, as the routes see it."""

    card: ModelCard
    settings: Settings

    async def in_worker_thread(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run CPU-bound work off the event loop."""
        ...

    async def classify(self, pixels: np.ndarray) -> np.ndarray:
        """(1, H, W, 3) uint8 → probabilities, through adaptive batching."""
        ...

    async def classify_windows(self, pixels: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 window crops → probabilities, in fixed-size chunks."""
        ...

    async def dense_windows(self, image: np.ndarray, regions: np.ndarray) -> np.ndarray:
        """One scaled image and N input regions → probabilities from pooled features."""
        ...


CurrentBackend = Annotated[Backend, Depends(bentoml.get_current_service)]
