"""The pure helpers of ``python -m benchmarks.peers``: CPU accounting from /proc, CPU and
throughput per 200 reply, the summary over rounds, and the choice of photo."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.peers.__main__ import summary_table
from benchmarks.peers.images import pick_image
from benchmarks.peers.loadgen import Level
from benchmarks.peers.proc import (
    ProcStat,
    cpu_seconds,
    parse_cpu_line,
    parse_stat,
    tree,
    tree_cpu_seconds,
)

# A real line's shape: pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt
# majflt cmajflt utime stime cutime cstime priority nice ...
STAT = "4242 (uvicorn) (w 1)) S 4200 4200 4200 0 -1 4194560 900 0 0 0 150 25 40 5 20 0 3 0"


def stat(pid: int, ppid: int, utime: int = 0, cutime: int = 0) -> ProcStat:
    return ProcStat(pid, ppid, utime, stime=0, cutime=cutime, cstime=0)


def test_stat_fields_are_read_after_a_command_name_with_spaces_and_parentheses() -> None:
    assert parse_stat(STAT) == ProcStat(4242, 4200, utime=150, stime=25, cutime=40, cstime=5)


def test_the_tree_is_the_root_and_its_descendants_only() -> None:
    stats = {s.pid: s for s in (stat(1, 0), stat(10, 1), stat(11, 10), stat(12, 11), stat(20, 1))}
    assert sorted(s.pid for s in tree(10, stats)) == [10, 11, 12]
    assert tree(99, stats) == []


def test_cpu_counts_user_system_and_reaped_children() -> None:
    processes = [ProcStat(1, 0, utime=100, stime=50, cutime=30, cstime=20), stat(2, 1, 100)]
    assert cpu_seconds(processes, ticks_per_second=100) == pytest.approx(3.0)


def test_machine_busy_ticks_leave_out_idle_iowait_and_steal() -> None:
    # cpu user nice system idle iowait irq softirq steal guest guest_nice
    assert parse_cpu_line("cpu  100 2 30 9000 70 4 5 800 0 0") == 141
    with pytest.raises(ValueError):
        parse_cpu_line("cpu0 1 2 3 4 5 6 7 8 0 0")


def test_a_grandchild_that_exits_mid_window_is_still_counted() -> None:
    """The grandchild burns 0.4 s of CPU and is reaped before the second reading: without
    the reaped children's time the tree would seem idle."""
    burn = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys; subprocess.run([sys.executable, '-c', {burn!r}]); "
            "print('done', flush=True); sys.stdin.readline()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        before = tree_cpu_seconds(parent.pid)
        assert parent.stdout is not None and parent.stdout.readline() == "done\n"
        time.sleep(0.05)
        grown = tree_cpu_seconds(parent.pid) - before
    finally:
        parent.communicate("\n", timeout=30)
    assert 0.35 <= grown < 3.0


def test_cpu_and_throughput_count_200_replies_only() -> None:
    level = Level(
        clients=64,
        window_s=2.0,
        statuses={200: 100, 503: 300, 0: 2},
        latencies_ms=np.arange(1.0, 101.0),
        server_cpu_s=0.8,
        loadgen_cpu_s=0.2,
        machine_busy_s=3.0,
    )
    assert (level.ok, level.errors, level.rps) == (100, 302, 50.0)
    assert level.server_core_ms == pytest.approx(8.0)
    assert level.other_share(cores=2) == pytest.approx(0.5)


def level(clients: int, ok: int, server_cpu_s: float) -> Level:
    latencies = np.full(ok, 10.0)
    return Level(clients, 10.0, {200: ok}, latencies, server_cpu_s, 0.0, server_cpu_s)


def test_the_summary_gives_each_figure_its_median_over_the_rounds() -> None:
    rounds = [
        [level(1, 100, 0.9), level(8, 300, 3.0)],
        [level(1, 120, 2.4), level(8, 310, 3.1)],  # a disturbed round: 20 core-ms
        [level(1, 110, 1.1), level(8, 290, 2.9)],
    ]
    row = summary_table({"argos": rounds}).splitlines()[-1]
    # median req/s 11.0, p50 10.0, core-ms/req median of 9.0, 20.0 and 10.0; 8 clients:
    # median req/s 30.0, no errors, p99 10.0
    assert row == "| argos | 11.0, 10.0, 10.0 | 30.0, 0.0, 10.0 |"


def test_the_photo_is_the_jpeg_nearest_720p_else_the_largest() -> None:
    small, hd, big = Path("small.jpg"), Path("hd.jpg"), Path("big.jpg")
    assert pick_image({small: (180, 180), hd: (1280, 720), big: (1800, 1200)}) == hd
    assert pick_image({small: (180, 180), big: (4000, 3000)}) == big
