"""Domain errors that carry their HTTP status and say what was received."""

from __future__ import annotations

import re


class ArgosError(Exception):
    """Base class: a client-side problem with a message a person can act on."""

    status_code = 400
    code = "bad_request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def to_dict(self) -> dict[str, str]:
        return {"error": self.code, "detail": self.detail}

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers the reply carries."""
        return {}


class EmptyBody(ArgosError):
    status_code = 400
    code = "empty_body"


class MissingImage(ArgosError):
    status_code = 400
    code = "missing_image"


class PayloadTooLarge(ArgosError):
    status_code = 413
    code = "payload_too_large"


class ImageTooLarge(ArgosError):
    status_code = 413
    code = "image_too_large"


class UnsupportedMediaType(ArgosError):
    status_code = 415
    code = "unsupported_media_type"


class InvalidImage(ArgosError):
    status_code = 422
    code = "invalid_image"


class InvalidParameter(ArgosError):
    status_code = 422
    code = "invalid_parameter"


class ServiceUnavailable(ArgosError):
    """The request was fine but cannot be served now; the client should retry later."""

    status_code = 503
    code = "unavailable"
    retry_after_s = 1

    def __init__(self, detail: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(detail)
        if retry_after_s is not None:
            self.retry_after_s = retry_after_s

    close_connection = False  # send the client to another replica

    @property
    def headers(self) -> dict[str, str]:
        headers = {"Retry-After": str(self.retry_after_s)}
        if self.close_connection:
            headers["Connection"] = "close"
        return headers


class Overloaded(ServiceUnavailable):
    code = "overloaded"


class QueueTimeout(ServiceUnavailable):
    code = "queue_timeout"


class ShuttingDown(ServiceUnavailable):
    code = "shutting_down"
    retry_after_s = 2
    close_connection = True


class NotReady(ServiceUnavailable):
    code = "not_ready"


class Unauthorized(ArgosError):
    """No key, or a key Argos does not know."""

    status_code = 401
    code = "unauthorized"

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="argos"'}


class Forbidden(ArgosError):
    """A known key without the scope the route needs, or a route that is switched off."""

    status_code = 403
    code = "forbidden"


class UnknownModel(ArgosError):
    status_code = 404
    code = "unknown_model"


class ModelLoadFailed(ArgosError):
    status_code = 400
    code = "model_load_failed"


class ModelsChanging(ServiceUnavailable):
    """A load or unload has not reached every worker in time; it goes on in the background."""

    code = "models_changing"
    retry_after_s = 5


def without_paths(text: str) -> str:
    """``text`` with each absolute file path cut to its last part, for replies to clients
    (the full text belongs in the server's log)."""
    return _ABSOLUTE_PATH.sub(r"\1", text)


_ABSOLUTE_PATH = re.compile(r"(?<![\w.])(?:/[^/\s'\"`,;:()]+)+/([^/\s'\"`,;:()]+)")
