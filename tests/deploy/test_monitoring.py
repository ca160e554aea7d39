"""The alert rules and the Grafana dashboard: promtool accepts and unit-tests the rules, and
both cover the metrics the service exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import REPO

PROMETHEUS = REPO / "deploy" / "prometheus"
DASHBOARD = json.loads((REPO / "deploy" / "grafana" / "argos.json").read_text())
ARGOS_METRICS = set(
    re.findall(r'name="(argos_\w+)"', (REPO / "service" / "metrics.py").read_text())
)


def dashboard_expressions() -> list[str]:
    return [target["expr"] for panel in DASHBOARD["panels"] for target in panel["targets"]]


def promtool(*args: str) -> str:
    binary = shutil.which("promtool")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing (Debian: apt-get install prometheus)")
        pytest.skip("promtool is not installed")
    result = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_promtool_checks_the_rules_and_the_compose_configuration() -> None:
    promtool("check", "rules", str(PROMETHEUS / "alerts.yml"))
    promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))


def test_promtool_unit_tests_pass() -> None:
    assert "SUCCESS" in promtool("test", "rules", str(PROMETHEUS / "alerts.test.yml"))


def test_every_alert_has_a_unit_test() -> None:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    tests = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())
    firing = {
        case["alertname"]
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert firing == alerts


def test_the_dashboard_shows_every_argos_metric() -> None:
    shown = {
        re.sub(r"_(total|bucket|sum|count)$", "", name)
        for expr in dashboard_expressions()
        for name in re.findall(r"argos_\w+", expr)
    }
    assert shown >= ARGOS_METRICS, ARGOS_METRICS - shown
