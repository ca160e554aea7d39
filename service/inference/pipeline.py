"""One inference path: encoded images in, probabilities and stage timings out.

Every route that classifies (``/classify``, ``/v2/.../infer``) and detection hand their
uploads here once the body is in hand: admission (counted in images), the preprocessing
limits, the hop to the preprocessing threads, the model's runner and the metrics live in
this one place, so a new limit or metric is written once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import anyio
import numpy as np
from PIL import Image

from service import metrics
from service.card import ModelCard
from service.errors import ArgosError
from service.inference.admission import Admission
from service.inference.model import ServedModel
from service.preprocessing import load_rgb, open_image, prepare_bytes
from service.settings import Settings

T = TypeVar("T")
Where = Callable[[int], str]
"""Image position → how a reply names that image, e.g. ``"image 2 of input 'image'"``."""


@dataclass(frozen=True, slots=True)
class StageTimes:
    """Seconds spent per stage of one request's inference work."""

    preprocess_s: float
    inference_s: float


@dataclass(frozen=True, slots=True)
class Familiar:
    """How familiar one image looks to a model with familiarity statistics."""

    familiarity: float
    """Share of held-out images of the model's classes that look at least as unusual."""
    unknown: bool
    """Unlike anything the model was trained on: its labels are not an answer."""


@dataclass(frozen=True, slots=True)
class Classified:
    probabilities: np.ndarray
    """(images, labels) probabilities, in the order the images came."""
    familiar: list[Familiar] | None
    """Per image, for a model with familiarity statistics; else ``None``."""
    times: StageTimes


def judge_familiarity(card: ModelCard, distances: Sequence[float | None]) -> list[Familiar] | None:
    """The classifier's familiarity distances → what the replies say; counts the unknown."""
    if card.familiarity is None:
        return None
    familiarity = card.familiarity.familiarity(np.asarray(distances, dtype=np.float64))
    unknown = card.familiarity.is_unknown(familiarity)
    metrics.UNKNOWN.labels(model=card.tag).inc(int(unknown.sum()))
    return [
        Familiar(round(float(f), 4), bool(u)) for f, u in zip(familiarity, unknown, strict=True)
    ]


class Pipeline:
    """A worker's inference path, shared by every route and model it serves."""

    def __init__(self, settings: Settings, admission: Admission) -> None:
        self.settings = settings
        self.admission = admission
        self._threads = anyio.CapacityLimiter(settings.preprocess_threads)

    @property
    def max_images(self) -> int:
        """Most images one request may carry: a batch, and never more than admission holds."""
        return min(self.settings.batch_size, self.settings.max_inflight)

    @contextmanager
    def admitted(self, model: ServedModel, units: int, images_of_work: float) -> Iterator[None]:
        """``units`` places of admission (images, or 1 per detection job) and the work of
        ``images_of_work`` images on ``model``'s runner, or a 503."""
        with self.admission.slot(units, model.runner.expected_seconds(images_of_work)):
            yield

    async def in_thread(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run CPU-bound work (Pillow and numpy release the GIL) off the event loop."""
        return await anyio.to_thread.run_sync(partial(func, *args, **kwargs), limiter=self._threads)

    async def classify(
        self,
        model: ServedModel,
        images: Sequence[bytes],
        *,
        endpoint: str,
        where: Where | None = None,
        inline: bool = False,
    ) -> Classified:
        """Classify encoded images: each is checked against the limits, decoded and
        preprocessed as the card says, then batched with concurrent requests. The runner
        knows they are on their way while they are preprocessed, so a batch waits for them
        and for nothing else. With ``inline`` (an HTTP route's), a lone small upload on an
        idle worker is run on the event loop (:meth:`_alone`, :meth:`_prepare_here`). An
        error about one image names it with ``where``."""
        card = model.card
        started = time.perf_counter()
        alone = inline and len(images) == 1 and await self._alone(model)
        with (
            self.admitted(model, len(images), len(images)),
            model.runner.on_the_way(len(images)) as announced,
        ):
            pixels = self._prepare_here(card, images[0]) if alone else None
            if pixels is not None:
                preprocessed = time.perf_counter()
                rows = [model.runner.run_here(pixels)]
            else:
                pixels = await asyncio.gather(
                    *(
                        self._prepare(card, data, position, where)
                        for position, data in enumerate(images)
                    )
                )
                preprocessed = time.perf_counter()
                rows = await asyncio.gather(*(model.classify(p, announced) for p in pixels))
        finished = time.perf_counter()
        probabilities = np.stack([row.probabilities for row in rows])
        for row in probabilities:
            metrics.TOP1.labels(model=card.tag, label=card.labels[int(np.argmax(row))]).inc()
        familiar = judge_familiarity(card, [row.distance for row in rows])
        times = StageTimes(preprocessed - started, finished - preprocessed)
        self.observe(endpoint, times)
        return Classified(probabilities, familiar, times)

    async def open(self, data: bytes) -> Image.Image:
        """One upload opened, its header read and checked against the pixel limit; no pixel
        is decoded yet."""
        return await self.in_thread(open_image, data, max_pixels=self.settings.max_image_pixels)

    async def decode(self, image: Image.Image) -> Image.Image:
        """An opened upload decoded to upright RGB within the decoded-bytes limit."""
        return await self.in_thread(
            load_rgb, image, max_decoded_bytes=self.settings.max_decoded_bytes
        )

    @staticmethod
    def observe(endpoint: str, times: StageTimes) -> None:
        metrics.observe_stages(endpoint, preprocess=times.preprocess_s, inference=times.inference_s)

    async def _alone(self, model: ServedModel) -> bool:
        """Whether this request is the worker's only one: no other HTTP request in progress
        (bodies still arriving count), nothing admitted, ``model``'s runner idle. Requests
        that arrived with this one are let in first, so that under load they are seen and
        the loop is never held while they wait unread."""
        if not self.settings.inline_max_decoded_bytes:
            return False
        await asyncio.sleep(0)
        return self.admission.requests <= 1 and not self.admission.inflight and model.runner.idle

    def _prepare_here(self, card: ModelCard, data: bytes) -> np.ndarray | None:
        """A lone upload on an idle worker, preprocessed on the event loop when its decoded
        frame is small (``inline_max_decoded_bytes``): a hop to a thread and back costs
        more than such an image's work. None when it is not small (the header tells, before
        any pixel is decoded); its errors, and a bad upload's, are then the threads' to
        give."""
        limit = min(self.settings.inline_max_decoded_bytes, self.settings.max_decoded_bytes)
        try:
            return prepare_bytes(
                data,
                card.preprocessing,
                max_pixels=self.settings.max_image_pixels,
                max_decoded_bytes=limit,
            )
        except ArgosError:
            return None

    async def _prepare(
        self, card: ModelCard, data: bytes, position: int, where: Where | None
    ) -> np.ndarray:
        try:
            return await self.in_thread(
                prepare_bytes,
                data,
                card.preprocessing,
                max_pixels=self.settings.max_image_pixels,
                max_decoded_bytes=self.settings.max_decoded_bytes,
            )
        except ArgosError as error:
            if where is None:
                raise
            raise type(error)(f"{where(position)}: {error.detail}") from None
