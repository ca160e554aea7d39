"""Domain errors that carry their HTTP status and say what was received."""

from __future__ import annotations

import re


class ArgosError(Exception):
    """Base class: a client-side problem with a message a person can act on. A subclass
    names its HTTP status and machine-readable code:
    ``class X(ArgosError, status=..., code=...)``."""

    status_code = 400
    code = "bad_request"

    def __init_subclass__(cls, *, status: int | None = None, code: str | None = None) -> None:
        super().__init_subclass__()
        if status is not None:
            cls.status_code = status
        if code is not None:
            cls.code = code

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def to_dict(self) -> dict[str, str]:
        return {"error": self.code, "detail": self.detail}

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers the reply carries."""
        return {}


class EmptyBody(ArgosError, status=400, code="empty_body"):
    """The request carries no bytes."""


class MissingImage(ArgosError, status=400, code="missing_image"):
    """A multipart body without an ``image`` file field."""


class PayloadTooLarge(ArgosError, status=413, code="payload_too_large"):
    """A body over the upload limit."""


class ImageTooLarge(ArgosError, status=413, code="image_too_large"):
    """An image over the pixel or decoded-bytes limit."""


class UnsupportedMediaType(ArgosError, status=415, code="unsupported_media_type"):
    """A Content-Type (or Content-Encoding) Argos does not read."""


class InvalidImage(ArgosError, status=422, code="invalid_image"):
    """Bytes that are not an image Argos can decode."""


class InvalidParameter(ArgosError, status=422, code="invalid_parameter"):
    """A parameter out of range or of the wrong kind."""


class Unauthorized(ArgosError, status=401, code="unauthorized"):
    """No key, or a key Argos does not know."""

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="argos"'}


class Forbidden(ArgosError, status=403, code="forbidden"):
    """A known key without the scope the route needs, or a route that is switched off."""


class UnknownModel(ArgosError, status=404, code="unknown_model"):
    """A model or version that is not served (or not in the store)."""


class ModelLoadFailed(ArgosError, status=400, code="model_load_failed"):
    """A model version that could not be loaded; the server keeps what it had."""


class ServiceUnavailable(ArgosError, status=503, code="unavailable"):
    """The request was fine but cannot be served now; the client should retry later."""

    retry_after_s = 1
    close_connection = False  # send the client to another replica

    def __init__(self, detail: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(detail)
        if retry_after_s is not None:
            self.retry_after_s = retry_after_s

    @property
    def headers(self) -> dict[str, str]:
        headers = {"Retry-After": str(self.retry_after_s)}
        if self.close_connection:
            headers["Connection"] = "close"
        return headers


class Overloaded(ServiceUnavailable, code="overloaded"):
    """The worker holds all the work it can finish in time."""


class QueueTimeout(ServiceUnavailable, code="queue_timeout"):
    """A request waited in the inference queue past its deadline."""


class ShuttingDown(ServiceUnavailable, code="shutting_down"):
    """The server drains: go to another replica."""

    retry_after_s = 2
    close_connection = True


class NotReady(ServiceUnavailable, code="not_ready"):
    """The model asked for (or the default one) is not loaded yet, or no longer."""


class ModelsChanging(ServiceUnavailable, code="models_changing"):
    """A load or unload has not reached every worker in time; it goes on in the background."""

    retry_after_s = 5


def without_paths(text: str) -> str:
    """``text`` with each absolute file path cut to its last part, for replies to clients
    (the full text belongs in the server's log)."""
    return _ABSOLUTE_PATH.sub(r"\1", text)


_ABSOLUTE_PATH = re.compile(r"(?<![\w.])(?:/[^/\s'\"`,;:()]+)+/([^/\s'\"`,;:()]+)")
