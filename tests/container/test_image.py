"""Smoke test of the built image, run as Kubernetes runs it: it starts within the budget,
serves the models it was built with over every API, is scraped by a real Prometheus, and
drains on SIGTERM without losing an accepted request.

The tests share one container and run in file order; the drain test stops it.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO
from tests.container.conftest import (
    FIGURES,
    INFER,
    KEYS,
    Container,
    deployment,
    podman,
    remove,
    start,
)
from tests.container.prometheus import prometheus_server
from tests.deploy.test_monitoring import dashboard_expressions
from tests.integration.test_drain import _wait_until_admitted, readiness, upload

pytestmark = pytest.mark.container

STARTS = 3
READY_PER_IMPORT = 3.0
"""Longest start of the image, in imports of the service on this host measured in the same
minute: a shared machine's speed drifts by half within an hour, and what the start adds to
its processes' imports (a serial wait, a compile, a download) moves this ratio."""
READY_BUDGET_S = os.environ.get("ARGOS_READY_BUDGET_S")
"""Also held to these seconds when set: for a host whose speed is known and steady."""
UPLOADS = 48
SIZE_BUDGET_BYTES = 450_000_000


@pytest.fixture(scope="module")
def photo(images: Path) -> bytes:
    return (images / "cat_720p.jpg").read_bytes()


def served(container: Container) -> list[str]:
    models = httpx.get(f"{container.url}/models", headers=INFER, timeout=10).json()["models"]
    return [f"{model['name']}:{model['version']}" for model in models]


def test_image_is_small_and_has_no_build_tools(image: str) -> None:
    size = int(podman("image", "inspect", "--format={{.Size}}", image))
    FIGURES["image size"] = f"{size / 1e6:.0f} MB uncompressed"
    assert size <= SIZE_BUDGET_BYTES
    found = subprocess.run(
        ["podman", "run", "--rm", *shlex.split(os.environ.get("ARGOS_CONTAINER_RUN_FLAGS", "")),
         "--entrypoint=sh", image, "-c", "command -v gcc cc c++ make git uv pip || true"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == []


def import_seconds() -> float:
    """One import of the service in a fresh interpreter on this host."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", "import service.service"], cwd=REPO, check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    return time.monotonic() - started


def test_starts_within_budget(container: Container, image: str, secret_dir: Path) -> None:
    """Timed like a benchmark on a shared machine, where other work only slows a start:
    the fastest of ``STARTS`` starts (the first is the container the other tests use),
    against the fastest import of the service on the same host, one after each start."""
    times, imports = [container.ready_s], [import_seconds()]
    for _ in range(STARTS - 1):
        again = start(image, secret_dir)
        remove(again.name)
        times.append(again.ready_s)
        imports.append(import_seconds())
    ready, reference = min(times), min(imports)
    listed = ", ".join(f"{seconds:.1f}" for seconds in times)
    FIGURES["ready"] = f"{ready:.1f} s from podman run to /readyz 200, fastest of {listed} s"
    FIGURES["ready in imports of the service"] = (
        f"{ready / reference:.2f} (one import on this host {reference:.2f} s; "
        f"at most {READY_PER_IMPORT})"
    )
    assert ready <= READY_PER_IMPORT * reference, FIGURES
    if READY_BUDGET_S:
        assert ready <= float(READY_BUDGET_S), FIGURES


def test_serves_the_models_its_labels_name(container: Container, labels: dict[str, str]) -> None:
    assert labels["argos.models"].split(",") == served(container)


def test_runs_as_the_deployment_says(container: Container) -> None:
    pod = deployment()["spec"]["template"]["spec"]
    uid = container.inspect("{{.Config.User}}")
    assert uid == f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}"
    assert container.inspect("{{.HostConfig.ReadonlyRootfs}}") == "true"
    assert deployment()["spec"]["template"]["spec"]["containers"][0]["image"] == container.image


def test_keys_from_the_secret_guard_the_api(container: Container, photo: bytes) -> None:
    anonymous = httpx.post(f"{container.url}/classify", files={"image": photo}, timeout=60)
    assert anonymous.status_code == 401
    unload = httpx.post(
        f"{container.url}/v2/repository/models/{served(container)[0]}/unload",
        headers={"Authorization": f"Bearer {KEYS['infer']}"},
        timeout=10,
    )
    assert unload.status_code == 403
    index = httpx.post(
        f"{container.url}/v2/repository/index",
        headers={"Authorization": f"Bearer {KEYS['admin']}"},
        timeout=10,
    )
    assert index.status_code == 200, index.text


def test_classify(container: Container, photo: bytes) -> None:
    reply = httpx.post(
        f"{container.url}/classify", files={"image": photo}, headers=INFER, timeout=60
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["predictions"][0]["label"] == "Egyptian_cat"


def test_detect_with_the_second_model(container: Container, photo: bytes) -> None:
    name = served(container)[1].split(":")[0]
    reply = httpx.post(
        f"{container.url}/detect",
        params={"model": name},
        files={"image": photo},
        headers=INFER,
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model"]["name"] == name and body["detections"]


def test_v2_through_tritonclient(container: Container, photo: bytes) -> None:
    client = triton.InferenceServerClient(container.url.removeprefix("http://"))
    assert client.is_server_ready()
    for tag in served(container):
        name = tag.split(":")[0]
        assert client.is_model_ready(name, headers=INFER)
        tensor = triton.InferInput("image", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([photo], dtype=np.object_))
        # a copy: tritonclient.http adds Inference-Header-Content-Length to the dict it gets
        reply = client.infer(name, [tensor], headers=dict(INFER))
        probabilities = reply.as_numpy("probabilities")
        assert probabilities.shape[0] == 1 and probabilities.sum() == pytest.approx(1, abs=1e-3)


def test_grpc_through_tritonclient(container: Container, photo: bytes) -> None:
    """The gRPC service of the image (its own protocol modules, no Triton package) answers
    the stock client as HTTP does."""
    client = triton_grpc.InferenceServerClient(container.grpc_url)
    keyed = {name.lower(): value for name, value in INFER.items()}  # gRPC metadata keys
    assert client.is_server_ready(client_timeout=30)
    for tag in served(container):
        name = tag.split(":")[0]
        assert client.get_model_config(name, headers=keyed).config.name == name
        tensor = triton_grpc.InferInput("image", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([photo], dtype=np.object_))
        result = client.infer(name, [tensor], headers=keyed, client_timeout=60)
        probabilities = result.as_numpy("probabilities")
        assert probabilities.shape[0] == 1 and probabilities.sum() == pytest.approx(1, abs=1e-3)


def test_prometheus_scrapes_argos_series(container: Container) -> None:
    with prometheus_server(container.url) as prometheus:
        series = prometheus.wait_for('count({job="argos", __name__=~"argos_.+"})')
        assert series > 0
        assert prometheus.wait_for('min(argos_served_versions{job="argos"})') >= 1
        assert prometheus.wait_for('min(argos_ready{job="argos"})') == 1
        assert prometheus.wait_for('up{job="argos"}') == 1
        assert prometheus.rule_groups() >= 1
        for expression in dashboard_expressions():  # each Grafana panel's query evaluates
            query = expression.replace("$job", "argos").replace("$__rate_interval", "1m")
            prometheus.query(query)


def test_sigterm_answers_every_accepted_request_then_exits_0(
    container: Container, photo: bytes
) -> None:
    grace_s = deployment()["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    replies: list[object] = []
    sent = threading.Barrier(UPLOADS + 1)
    clients = [
        threading.Thread(target=upload, args=(container.url, photo, sent, replies, INFER))
        for _ in range(UPLOADS)
    ]
    admitted_before = admitted(container)
    for client in clients:
        client.start()
    sent.wait(timeout=60)
    _wait_until_admitted(container.url, admitted_before + UPLOADS)
    stopped = time.monotonic()
    # podman stop: SIGTERM, then SIGKILL after the grace period as Kubernetes would.
    stop = subprocess.Popen(
        ["podman", "stop", f"--time={grace_s}", container.name], stdout=subprocess.DEVNULL
    )
    time.sleep(0.3)
    draining_readiness = readiness(container.url)
    for client in clients:
        client.join(timeout=grace_s)
    stop.wait(timeout=grace_s + 10)
    exit_s = time.monotonic() - stopped
    FIGURES["drain"] = f"{UPLOADS} uploads in flight answered, exit in {exit_s:.1f} s"

    assert draining_readiness != 200
    assert replies.count(200) == UPLOADS, [reply for reply in replies if reply != 200][:5]
    assert container.inspect("{{.State.ExitCode}}") == "0"
    assert exit_s < grace_s


def admitted(container: Container) -> float:
    scrape = httpx.get(f"{container.url}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(scrape)
        for sample in family.samples
        if sample.name == "argos_admitted_requests_total"
    )
