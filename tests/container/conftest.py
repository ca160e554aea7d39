"""The built image, started as the Kubernetes Deployment runs it (``scripts/container smoke``).

Runs only when ``ARGOS_IMAGE`` names an image in podman's local storage; the security
settings and environment come from ``deploy/kubernetes``, so the smoke test checks the
image the way the manifests use it.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import REPO

KUBERNETES = REPO / "deploy" / "kubernetes"
READY_TIMEOUT_S = 60
# Above the ConfigMap's: the drain test queues every upload it sends.
TEST_ENV = {"ARGOS_QUEUE_TIMEOUT_MS": "60000", "ARGOS_MAX_INFLIGHT": "200"}


# Figures the smoke test measured, printed at the end of the run (scripts/container smoke).
FIGURES: dict[str, str] = {}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.write_sep("-", "container figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")


KEYS = {"infer": "smoke-infer-key", "admin": "smoke-admin-key"}
"""The keys of the Secret the smoke test mounts."""
INFER = {"Authorization": f"Bearer {KEYS['infer']}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def deployment() -> dict:
    return yaml.safe_load((KUBERNETES / "deployment.yaml").read_text())


def kubernetes_run_flags(secret_dir: Path) -> list[str]:
    """``podman run`` flags for the CPU Deployment's pod: user, read-only root, its volumes
    (``emptyDir``: a tmpfs; the Secret of API keys: ``secret_dir``), no capabilities, no
    privilege escalation, its ConfigMap and env."""
    pod = deployment()["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    [container] = pod["containers"]
    security = pod["securityContext"] | container["securityContext"]
    configmap = yaml.safe_load((KUBERNETES / "common" / "configmap.yaml").read_text())
    env = configmap["data"] | {item["name"]: item["value"] for item in container["env"]}
    flags = [f"--user={security['runAsUser']}:{security['runAsGroup']}"]
    if security["readOnlyRootFilesystem"]:
        flags.append("--read-only")
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            flags.append(f"--tmpfs={mount['mountPath']}")
        else:
            assert volume["secret"]["secretName"] == "argos-api-keys", volume
            flags.append(f"--volume={secret_dir}:{mount['mountPath']}:ro")
    flags += [f"--cap-drop={cap}" for cap in security["capabilities"]["drop"]]
    if not security["allowPrivilegeEscalation"]:
        flags.append("--security-opt=no-new-privileges")
    flags += [f"--env={name}={value}" for name, value in (env | TEST_ENV).items()]
    return flags


def container_ports() -> dict[str, int]:
    """The Deployment's container ports by name (``http``, ``grpc``)."""
    [container] = deployment()["spec"]["template"]["spec"]["containers"]
    return {port["name"]: port["containerPort"] for port in container["ports"]}


@dataclass
class Container:
    name: str
    image: str
    url: str
    ready_s: float
    grpc_url: str
    """``host:port`` of the gRPC inference service."""

    def inspect(self, template: str) -> str:
        return podman("inspect", "--format", template, self.name).strip()


def podman(*args: str, timeout: float = 120) -> str:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"podman {' '.join(args)}: {result.stderr[-2000:]}"
    return result.stdout


@pytest.fixture(scope="session")
def image() -> str:
    name = os.environ.get("ARGOS_IMAGE")
    if not name:
        pytest.skip("ARGOS_IMAGE is not set: run scripts/container build, then smoke")
    return name


@pytest.fixture(scope="session")
def labels(image: str) -> dict[str, str]:
    return json.loads(podman("image", "inspect", "--format", "{{json .Labels}}", image))


@dataclass(frozen=True)
class Start:
    """One ``podman run`` of the image, timed to ``/readyz`` 200."""

    name: str
    url: str
    grpc_url: str
    ready_s: float
    cpu_s: float
    """CPU time of all the container's processes until ready."""


@pytest.fixture(scope="module")
def secret_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The API keys Secret's files, readable by the container's user."""
    secret = tmp_path_factory.mktemp("secret")
    for scope, key in KEYS.items():
        (secret / scope).write_text(f"{key}\n")
        (secret / scope).chmod(0o644)
    secret.chmod(0o755)
    return secret


def start(image: str, secret: Path) -> Start:
    """Run the image with the Deployment's settings, its HTTP and gRPC ports published on
    loopback ports, and wait until it is ready; the caller removes it (:func:`remove`)."""
    name, port, grpc_port = f"argos-smoke-{os.getpid()}-{free_port()}", free_port(), free_port()
    ports = container_ports()
    run_flags = shlex.split(os.environ.get("ARGOS_CONTAINER_RUN_FLAGS", ""))
    started = time.monotonic()
    podman("run", "--detach", f"--name={name}", f"--publish=127.0.0.1:{port}:{ports['http']}",
           f"--publish=127.0.0.1:{grpc_port}:{ports['grpc']}",
           *run_flags, *kubernetes_run_flags(secret), image)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        ready_s = wait_until_ready(url, name, started)
        cpu_s = int(podman("stats", "--no-stream", "--format={{.CPUNano}}", name)) / 1e9
    except BaseException:
        remove(name)
        raise
    return Start(name, url, f"127.0.0.1:{grpc_port}", ready_s, cpu_s)


def remove(name: str) -> None:
    subprocess.run(["podman", "rm", "--force", "--time=0", name], capture_output=True)


@pytest.fixture(scope="module")
def container(image: str, secret_dir: Path) -> Iterator[Container]:
    """The image running with the Deployment's settings (:func:`start`)."""
    load = os.getloadavg()[0]
    first = start(image, secret_dir)
    FIGURES["ready"] = f"{first.ready_s:.1f} s from podman run to /readyz 200 ({image})"
    FIGURES["CPU time to ready"] = f"{first.cpu_s:.1f} s, all processes of the container"
    FIGURES["load average at start"] = f"{load:.1f} on {os.cpu_count()} CPUs"
    try:
        yield Container(first.name, image, first.url, first.ready_s, first.grpc_url)
    finally:
        remove(first.name)


def wait_until_ready(url: str, name: str, started: float) -> float:
    """Seconds from ``podman run`` until ``/readyz`` answers 200."""
    while time.monotonic() - started < READY_TIMEOUT_S:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    logs = subprocess.run(["podman", "logs", name], capture_output=True, text=True)
    pytest.fail(f"not ready in {READY_TIMEOUT_S} s:\n{(logs.stdout + logs.stderr)[-3000:]}")
