"""A real Prometheus (the ``prometheus`` binary, e.g. Debian's package) on loopback, scraping
one Argos with the shipped alert rules loaded."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from tests.conftest import REPO
from tests.container.conftest import free_port

RULES = REPO / "deploy" / "prometheus" / "alerts.yml"
SCRAPE_INTERVAL = "1s"


@dataclass
class Prometheus:
    url: str

    def query(self, expression: str) -> float | None:
        """The first sample of an instant query; None when it returns nothing."""
        reply = httpx.get(f"{self.url}/api/v1/query", params={"query": expression}, timeout=10)
        reply.raise_for_status()
        result = reply.json()["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, expression: str, timeout_s: float = 30) -> float:
        """The query's value once it returns one; until then, a Prometheus still starting
        (refusing connections, or answering its API with an error) is waited for too."""
        deadline = time.monotonic() + timeout_s
        last_error: httpx.HTTPError | None = None
        while time.monotonic() < deadline:
            try:
                if (value := self.query(expression)) is not None:
                    return value
            except httpx.HTTPError as error:
                last_error = error
            time.sleep(0.5)
        raise TimeoutError(
            f"Prometheus returned nothing for {expression} in {timeout_s} s (last error: "
            f"{last_error})"
        )

    def rule_groups(self) -> int:
        reply = httpx.get(f"{self.url}/api/v1/rules", timeout=10)
        reply.raise_for_status()
        return len(reply.json()["data"]["groups"])


@contextmanager
def prometheus_server(target_url: str) -> Iterator[Prometheus]:
    """Prometheus scraping ``target_url``'s ``/metrics`` every second as job ``argos``."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("no prometheus binary (Debian: apt-get install prometheus)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="argos-prometheus-") as work:
        target = urlsplit(target_url).netloc
        config = {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": "argos", "static_configs": [{"targets": [target]}]}],
        }
        (Path(work) / "prometheus.yml").write_text(yaml.safe_dump(config))
        process = subprocess.Popen(
            [binary, f"--config.file={work}/prometheus.yml", f"--storage.tsdb.path={work}/data",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            prometheus = Prometheus(f"http://127.0.0.1:{port}")
            wait_until_ready(prometheus, process)
            yield prometheus
        finally:
            process.terminate()
            process.wait(timeout=30)


def wait_until_ready(
    prometheus: Prometheus, process: subprocess.Popen, timeout_s: float = 30
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"prometheus exited: {process.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"{prometheus.url}/-/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"prometheus not ready in {timeout_s} s")
