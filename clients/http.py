"""Typed HTTP client for the Argos inference API."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from clients.bounded import ResponseTooLarge, bounded_request
from service.formats import sniff_media_type

_T = TypeVar("_T", bound=BaseModel)
MAX_REPLY_BYTES = 4 * 1024 * 1024
"""Largest reply accepted from a server; Argos's largest, a model card, is tens of kB."""


class ArgosClientError(Exception):
    """Base class of every error raised by `ArgosClient`."""

    retryable: bool = False


class ArgosUnavailable(ArgosClientError):
    """The service could not be reached (connection refused, timeout, DNS, ...)."""

    retryable = True


class ArgosRequestError(ArgosClientError):
    """The service answered with a non-2xx status or an unreadable body."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(f"HTTP {status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        # Server-side and rate-limit failures may succeed when tried again.
        self.retryable = status >= 500 or status == 429


class _Reply(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, protected_namespaces=())


class ModelInfo(_Reply):
    name: str
    version: str


class Prediction(_Reply):
    label: str
    index: int
    score: float


class GroupScore(_Reply):
    name: str
    score: float


class Detection(_Reply):
    label: str
    score: float
    box: tuple[float, float, float, float]


class Explanation(_Reply):
    """Where the image shows the top label: per-cell scores over `box` (image pixels)."""

    label: str
    index: int
    grid: list[list[float]]
    box: tuple[float, float, float, float]


class ClassifyResult(_Reply):
    """Reply of `POST /classify`; `groups` is None unless groups were requested;
    `familiarity` and `unknown` come from models with familiarity statistics;
    `explanation` only when asked for."""

    model: ModelInfo
    predictions: list[Prediction]
    groups: list[GroupScore] | None = None
    familiarity: float | None = None
    unknown: bool | None = None
    explanation: Explanation | None = None
    timing_ms: dict[str, float] = {}


class DetectResult(_Reply):
    """Reply of `POST /detect`."""

    model: ModelInfo
    detections: list[Detection]
    windows: int
    timing_ms: dict[str, float] = {}


class ModelCard(_Reply):
    """The parts of `GET /model` a client needs; other card fields are ignored."""

    name: str
    version: str
    labels: list[str]
    label_groups: dict[str, list[int]] = {}
    dense: dict[str, Any] | None = None
    familiarity: dict[str, Any] | None = None


class ArgosClient:
    """Blocking client for one Argos server; use as a context manager or call `close()`."""

    def __init__(
        self,
        base_url: str,
        timeout: float = 10.0,
        max_reply_bytes: int = MAX_REPLY_BYTES,
        model: str | None = None,
        api_key: str | None = None,
    ) -> None:
        """``timeout`` is the deadline of each whole call; replies over ``max_reply_bytes``
        are refused; ``model`` names one of the server's models (default: its default);
        ``api_key`` is sent as ``Authorization: Bearer`` to a server that needs keys."""
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_reply_bytes = max_reply_bytes
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            params={"model": model} if model else None,
            headers={"Authorization": f"Bearer {api_key}"} if api_key else None,
        )

    def classify(
        self,
        image: bytes | Path,
        top_k: int | None = None,
        groups: bool = True,
        explain: bool = False,
    ) -> ClassifyResult:
        """Top-k labels (and label-group scores when `groups`, the top label's map when
        `explain`) for one image; `top_k` defaults to the server's."""
        params = {"groups": groups} | ({"top_k": top_k} if top_k is not None else {})
        params |= {"explain": True} if explain else {}
        reply = self._post("/classify", image, params)
        return _parse(ClassifyResult, reply)

    def detect(self, image: bytes | Path, **params: Any) -> DetectResult:
        """Sliding-window detections; `params` are passed as query parameters."""
        return _parse(DetectResult, self._post("/detect", image, params))

    def model_card(self) -> ModelCard:
        """The card of the model the client uses."""
        return _parse(ModelCard, self._send("GET", "/model"))

    def close(self) -> None:
        """Release the connection pool."""
        self._http.close()

    def __enter__(self) -> ArgosClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _post(self, path: str, image: bytes | Path, params: dict[str, Any]) -> httpx.Response:
        if isinstance(image, Path):
            name, data = image.name, image.read_bytes()
        else:
            name, data = "image", image
        files = {"image": (name, data, sniff_media_type(data))}
        return self._send("POST", path, params=params, files=files)

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = bounded_request(
                self._http,
                method,
                path,
                deadline_s=self.timeout,
                max_bytes=self.max_reply_bytes,
                **kwargs,
            )
        except ResponseTooLarge as exc:
            raise ArgosRequestError(0, "reply_too_large", str(exc)) from exc
        except httpx.TransportError as exc:
            raise ArgosUnavailable(
                f"{method} {self.base_url}{path} failed: {type(exc).__name__}: {exc}"
            ) from exc
        if not response.is_success:
            raise _request_error(response)
        return response


def _request_error(response: httpx.Response) -> ArgosRequestError:
    try:
        body = response.json()
        return ArgosRequestError(
            response.status_code, str(body["error"]), str(body.get("detail", ""))
        )
    except (ValueError, KeyError, TypeError):
        return ArgosRequestError(
            response.status_code, response.reason_phrase or "error", response.text[:200]
        )


def _parse(model: type[_T], response: httpx.Response) -> _T:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise ArgosRequestError(
            response.status_code,
            "invalid_response",
            f"{response.request.url.path} reply is not a valid {model.__name__}: {exc}",
        ) from exc
