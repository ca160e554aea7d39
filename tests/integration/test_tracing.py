"""A server with a tracing exporter traces requests; one without does not.

BentoML's log lines name the current span (``trace=...,span=...,sampled=...``), so the
access log of each server shows whether its requests were traced."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from harness.local_server import local_server

pytestmark = pytest.mark.integration

TRACED = {"exporter_type": "in_memory", "sample_rate": 1.0}


def access_lines(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if "path=/classify" in line]


@pytest.mark.parametrize(
    ("config", "traced"),
    [({}, False), ({"services": {"argos": {"tracing": TRACED}}}, True)],
    ids=["no exporter", "in-memory exporter"],
)
def test_requests_are_traced_when_an_exporter_is_configured(
    default_model: str, images: Path, tmp_path: Path, config: dict, traced: bool
) -> None:
    env = {"ARGOS_MODEL": default_model, "ARGOS_WORKERS": "1", "ARGOS_ACCESS_LOG": "true"}
    env["BENTOML_CONFIG_OVERRIDES"] = json.dumps(config)
    log = tmp_path / "server.log"
    with local_server(env, log=log) as server:
        body = (images / "cat.bmp").read_bytes()
        reply = httpx.post(
            f"{server.url}/classify", content=body, headers={"Content-Type": "image/bmp"}
        )
        assert reply.status_code == 200
    lines = access_lines(log)
    assert lines, log.read_text()[-2000:]
    if traced:
        assert all("sampled=1" in line for line in lines), lines
    else:
        assert not any("trace=" in line for line in lines), lines
