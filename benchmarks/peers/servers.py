"""The servers compared, one at a time, each on a free loopback port with the same layout:
Argos as ``benchmarks.server`` starts it for the project's own benchmark, KServe and
LitServe as subprocesses of the peers' interpreter (``--peer-python``)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks.peers.loadgen import Call
from benchmarks.server import serve
from harness.local_server import REPO, free_port

START_TIMEOUT_S = 180


@dataclass(frozen=True)
class Layout:
    """What every server gets: worker processes (KServe's uvicorn workers, LitServe's
    inference workers, Argos's BentoML workers), one onnxruntime intra-op thread each,
    and, where the server has a batcher, its largest batch and longest wait."""

    workers: int = 2
    threads: int = 1
    max_batch_size: int = 8
    batch_wait_ms: float = 2.0


@dataclass(frozen=True)
class Model:
    tag: str  # BentoML store tag, for Argos
    name: str
    artifact: Path  # the stored folder with model.onnx and its card, for the peers


@dataclass(frozen=True)
class Running:
    url: str
    pid: int  # the root of the server's process tree


@dataclass(frozen=True)
class Top:
    label: str
    score: float


class Argos:
    """``POST /classify`` with the JPEG as the body."""

    name = "argos"

    def call(self, image: bytes, model: Model) -> Call:
        return Call("/classify", image, {"Content-Type": "image/jpeg"})

    def top(self, reply: dict) -> Top:
        best = reply["predictions"][0]
        return Top(best["label"], best["score"])

    @contextmanager
    def serve(self, model: Model, layout: Layout) -> Iterator[Running]:
        env = {
            "ARGOS_MODEL": model.tag,
            "ARGOS_WORKERS": str(layout.workers),
            "ARGOS_INFERENCE_THREADS": str(layout.threads),
            "ARGOS_MAX_BATCH_SIZE": str(layout.max_batch_size),
            "ARGOS_MAX_QUEUE_DELAY_US": str(round(layout.batch_wait_ms * 1000)),
        }
        with serve(env) as server:
            yield Running(server.url, server.pid)


class KServe:
    """Open Inference Protocol v2, the JPEG as a base64 ``BYTES`` element. No batching:
    KServe's batcher is a sidecar of its Kubernetes deployment, not in the Python server."""

    name = "kserve"

    def __init__(self, python: Path) -> None:
        self.python = python

    def call(self, image: bytes, model: Model) -> Call:
        tensor = {"name": "image", "shape": [1], "datatype": "BYTES"}
        body = {"inputs": [tensor | {"data": [base64.b64encode(image).decode()]}]}
        return Call(
            f"/v2/models/{model.name}/infer",
            json.dumps(body).encode(),
            {"Content-Type": "application/json"},
        )

    def top(self, reply: dict) -> Top:
        score, _, label = reply["outputs"][0]["data"][0].split(":", 2)
        return Top(label, float(score))

    def serve(self, model: Model, layout: Layout) -> AbstractContextManager[Running]:
        args = ["--max-batch-size", str(layout.max_batch_size)]
        ready = f"/v2/models/{model.name}/ready"
        return _peer(self.python, "kserve_server", model, layout, args, ready)


class LitServe:
    """``POST /predict`` with the JPEG in base64 in a JSON object; LitServe batches."""

    name = "litserve"

    def __init__(self, python: Path) -> None:
        self.python = python

    def call(self, image: bytes, model: Model) -> Call:
        body = {"image": base64.b64encode(image).decode()}
        return Call("/predict", json.dumps(body).encode(), {"Content-Type": "application/json"})

    def top(self, reply: dict) -> Top:
        best = reply["predictions"][0]
        return Top(best["label"], best["score"])

    def serve(self, model: Model, layout: Layout) -> AbstractContextManager[Running]:
        args = ["--max-batch-size", str(layout.max_batch_size)]
        args += ["--batch-timeout-ms", str(layout.batch_wait_ms)]
        return _peer(self.python, "litserve_server", model, layout, args, "/health")


Server = Argos | KServe | LitServe
NAMES = tuple(kind.name for kind in (Argos, KServe, LitServe))
PEER_PACKAGES = {KServe.name: "kserve", LitServe.name: "litserve"}


def servers(peer_python: Path) -> dict[str, Server]:
    """Every server by name; the peers run under ``peer_python``."""
    return {s.name: s for s in (Argos(), KServe(peer_python), LitServe(peer_python))}


def check_peer_python(python: Path, names: list[str]) -> None:
    """Fail early, saying how to make it, when the peers' interpreter cannot import the
    packages of the peer servers asked for."""
    modules = [PEER_PACKAGES[name] for name in names if name in PEER_PACKAGES]
    if not modules:
        return
    setup = "python3.11 -m venv .venv-peers && .venv-peers/bin/pip install -e '.[peers]'"
    if not python.exists():
        raise SystemExit(f"{python} does not exist; make the peers' environment: {setup}")
    probe = subprocess.run(
        [str(python), "-c", "import " + ", ".join(modules)], capture_output=True, text=True
    )
    if probe.returncode:
        raise SystemExit(f"{python} cannot import {modules}: {probe.stderr.strip()}\n{setup}")


@contextmanager
def _peer(
    python: Path, module: str, model: Model, layout: Layout, extra: list[str], ready: str
) -> Iterator[Running]:
    """A peer server script in a session of its own (so that all its processes stop
    together), ready once ``GET ready`` answers 200; its output is kept in a temporary log
    and shown if it fails."""
    port = free_port()
    command = [str(python), "-m", f"benchmarks.peers.{module}", "--artifact", str(model.artifact)]
    command += ["--port", str(port), "--workers", str(layout.workers)]
    command += ["--threads", str(layout.threads), *extra]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=os.environ | {"PYTHONPATH": str(REPO)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url + ready, process)
            yield Running(url, process.pid)
        except Exception:
            log.seek(0)
            print(log.read().decode(errors="replace")[-4000:])
            raise
        finally:
            _stop(process)


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server behind {url} exited with code {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer 200 in {START_TIMEOUT_S} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, then SIGKILL whatever is left of it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
