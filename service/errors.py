"""Domain errors that carry their HTTP status and say what was received."""

from __future__ import annotations


class ArgosError(Exception):
    """Base class: a client-side problem with a message a person can act on."""

    status_code = 400
    code = "bad_request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def to_dict(self) -> dict[str, str]:
        return {"error": self.code, "detail": self.detail}


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


class UnknownModel(ArgosError):
    status_code = 404
    code = "unknown_model"


class ModelsChanging(ArgosError):
    """A load or unload has not reached every worker in time; it goes on in the background."""

    status_code = 503
    code = "models_changing"
