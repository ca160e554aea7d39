"""The compose deployment: its server drains before compose kills it, Prometheus scrapes it."""

from __future__ import annotations

import pytest
import yaml

from service.settings import Settings
from tests.conftest import REPO

DEPLOY = REPO / "deploy"
COMPOSE = yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())
ARGOS = COMPOSE["services"]["argos"]
EXIT_MARGIN_S = 5


def test_environment_is_accepted_by_the_service_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ARGOS["environment"].items():
        if name.startswith("ARGOS_"):
            assert name.lower().removeprefix("argos_") in Settings.model_fields
        monkeypatch.setenv(name, value)
    Settings()


def test_ports_are_published_on_loopback_unless_told_otherwise() -> None:
    for service in COMPOSE["services"].values():
        for port in service["ports"]:
            assert str(port).startswith("${ARGOS_BIND_ADDRESS:-127.0.0.1}:"), port


def test_compose_waits_for_the_drain_before_killing_the_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in ARGOS["environment"].items():
        monkeypatch.setenv(name, value)
    grace_s = int(ARGOS["stop_grace_period"].removesuffix("s"))
    assert grace_s >= Settings().drain_timeout_s + EXIT_MARGIN_S


def test_prometheus_scrapes_the_published_port_at_metrics() -> None:
    [mount] = [v for v in COMPOSE["services"]["prometheus"]["volumes"] if "prometheus.yml" in v]
    config = yaml.safe_load((DEPLOY / mount.split(":")[0]).read_text())
    scraped = {
        (target, job.get("metrics_path", "/metrics"))
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    container_ports = {str(port).split(":")[-1] for port in ARGOS["ports"]}
    assert {(f"argos:{port}", "/metrics") for port in container_ports} & scraped
