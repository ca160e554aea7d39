"""The documented 503 replies are what a full or draining worker answers."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.http.openapi import ERROR_EXAMPLES
from tests.service.http.test_classify import png


@pytest.mark.parametrize("code", ["overloaded", "shutting_down"])
def test_unavailable_examples_are_real(client: TestClient, code: str) -> None:
    admission = client.app.state.worker.admission
    if code == "overloaded":
        admission.inflight = admission.limit
    else:
        admission.draining = True
    reply = client.post("/classify", content=png((1, 2, 3)), headers={"Content-Type": "image/png"})
    assert reply.status_code == 503
    assert reply.json() == ERROR_EXAMPLES[503][code]
    assert int(reply.headers["Retry-After"]) >= 1
    documented = client.get("/openapi.json").json()["paths"]["/classify"]["post"]["responses"]
    assert "Retry-After" in documented["503"]["headers"]
