"""deploy/docker-compose.yaml with podman-compose (``scripts/container compose``): Prometheus,
from Debian's package, scrapes the Argos container and loads the alert rules; both ports are
published on 127.0.0.1 only."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import REPO
from tests.container.conftest import free_port, podman
from tests.container.prometheus import Prometheus

pytestmark = pytest.mark.container

COMPOSE = [str(REPO / "scripts" / "container"), "compose"]


@pytest.fixture(scope="module")
def stack(image: str) -> Iterator[tuple[Prometheus, dict[str, str]]]:
    env = os.environ | {
        "ARGOS_HOST_PORT": str(free_port()),
        "PROMETHEUS_HOST_PORT": str(free_port()),
    }
    env.pop("ARGOS_BIND_ADDRESS", None)  # the default: loopback
    up = subprocess.run([*COMPOSE, "up", "-d"], env=env, capture_output=True, text=True,
                        timeout=300)  # fmt: skip
    try:
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        yield Prometheus(f"http://127.0.0.1:{env['PROMETHEUS_HOST_PORT']}"), env
    finally:
        subprocess.run([*COMPOSE, "down"], env=env, capture_output=True, timeout=120)


def test_prometheus_scrapes_argos_in_the_stack(stack: tuple[Prometheus, dict[str, str]]) -> None:
    prometheus, _ = stack
    # Argos starts, then the 15 s scrape interval of deploy/prometheus/prometheus.yml.
    assert prometheus.wait_for('up{job="argos"} == 1', timeout_s=90) == 1
    assert prometheus.wait_for('count({job="argos", __name__=~"argos_.+"})', timeout_s=30) > 0
    assert prometheus.rule_groups() >= 1


def test_ports_are_published_on_loopback_only(stack: tuple[Prometheus, dict[str, str]]) -> None:
    _, env = stack
    published = podman("port", "argos_argos_1") + podman("port", "argos_prometheus_1")
    assert f"127.0.0.1:{env['ARGOS_HOST_PORT']}" in published
    assert f"127.0.0.1:{env['PROMETHEUS_HOST_PORT']}" in published
    assert "0.0.0.0" not in published
