"""A local Argos server with what the benchmark reads from it: CPU by process and thread,
and the batch sizes from ``GET /metrics``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from harness.local_server import local_server
from service.inference.runner import THREAD_NAME_PREFIX

CPU_PREFIX = "cpu:"
BATCH_METRIC = "argos_batch_size"
# Where a worker's CPU time goes: its event loop (HTTP, routing, validation, replies),
# its runner thread (onnxruntime; one intra-op thread runs on the caller), and every other
# thread (preprocessing in the thread pool, onnxruntime's extra intra-op threads).
EVENT_LOOP, RUNNER, OTHER_THREADS, SUPERVISOR = "event loop", "runner", "other threads", "serve"
ROLES = (EVENT_LOOP, RUNNER, OTHER_THREADS, SUPERVISOR)


@dataclass(frozen=True)
class Server:
    url: str
    pid: int

    def processes(self) -> list[psutil.Process]:
        """The ``bentoml serve`` process and all its descendants (the workers)."""
        root = psutil.Process(self.pid)
        return [root, *root.children(recursive=True)]

    def cpu_by_role(self) -> dict[str, float]:
        """User + system CPU seconds so far of every server process, split by role."""
        totals = dict.fromkeys(ROLES, 0.0)
        for process in self.processes():
            try:
                times = process.cpu_times()
                threads = process.threads()
            except psutil.NoSuchProcess:
                continue
            total = times.user + times.system
            if process.pid == self.pid:
                totals[SUPERVISOR] += total
                continue
            loop = runner = 0.0
            for thread in threads:
                seconds = thread.user_time + thread.system_time
                if thread.id == process.pid:
                    loop += seconds
                elif _thread_name(process.pid, thread.id).startswith(THREAD_NAME_PREFIX):
                    runner += seconds
            totals[EVENT_LOOP] += loop
            totals[RUNNER] += runner
            totals[OTHER_THREADS] += max(0.0, total - loop - runner)
        return totals

    def batch_sizes(self) -> dict[str, float]:
        """``batch_sum`` and ``batch_count`` of the runner batches so far."""
        scrape = httpx.get(f"{self.url}/metrics", timeout=10).text
        totals = {"batch_sum": 0.0, "batch_count": 0.0}
        for family in text_string_to_metric_families(scrape):
            if family.name != BATCH_METRIC:
                continue
            for sample in family.samples:
                for suffix in ("sum", "count"):
                    if sample.name == f"{BATCH_METRIC}_{suffix}":
                        totals[f"batch_{suffix}"] += sample.value
        return totals

    def counters(self) -> dict[str, float]:
        """Everything a load level differences: CPU seconds per role, batch-size totals."""
        cpu = {f"{CPU_PREFIX}{role}": seconds for role, seconds in self.cpu_by_role().items()}
        return cpu | self.batch_sizes()


def _thread_name(pid: int, tid: int) -> str:
    try:
        return Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
    except OSError:
        return ""


@contextmanager
def serve(env: dict[str, str] | None = None, *, quiet: bool = True) -> Iterator[Server]:
    """Run the service, with extra environment variables (``ARGOS_*`` settings, BentoML
    options), on a free loopback port until the block ends."""
    with local_server(env, quiet=quiet) as server:
        yield Server(server.url, server.pid)
