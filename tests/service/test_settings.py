"""Settings that depend on one another."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.settings import Settings


def test_a_load_or_unload_is_answered_before_the_request_times_out() -> None:
    defaults = Settings()
    assert defaults.model_load_timeout_s < defaults.request_timeout_s
    with pytest.raises(ValidationError, match=r"\(60\) must be below ARGOS_REQUEST_TIMEOUT_S"):
        Settings(model_load_timeout_s=60, request_timeout_s=60)
