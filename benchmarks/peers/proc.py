"""CPU time of a process tree from ``/proc``: user + system time of every live process under
a root, plus what its reaped children had used, so that a worker that exits mid-window
still counts."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` that CPU accounting needs, in clock ticks."""

    pid: int
    ppid: int
    utime: int
    stime: int
    cutime: int  # reaped children's user time
    cstime: int  # reaped children's system time

    @property
    def ticks(self) -> int:
        return self.utime + self.stime + self.cutime + self.cstime


def parse_stat(line: str) -> ProcStat:
    """One ``/proc/<pid>/stat`` line. The command name sits in parentheses and may itself
    hold spaces and parentheses, so the fields after it are found from its last ``)``."""
    pid = int(line[: line.index("(")])
    fields = line[line.rindex(")") + 2 :].split()
    # fields[0] is field 3 of proc(5) (state): ppid is field 4, utime..cstime 14..17.
    return ProcStat(
        pid=pid,
        ppid=int(fields[1]),
        utime=int(fields[11]),
        stime=int(fields[12]),
        cutime=int(fields[13]),
        cstime=int(fields[14]),
    )


def tree(root: int, stats: Mapping[int, ProcStat]) -> list[ProcStat]:
    """``root`` and all its descendants among ``stats`` (empty when ``root`` is gone)."""
    children: dict[int, list[int]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    found, pending = [], [root] if root in stats else []
    while pending:
        pid = pending.pop()
        found.append(stats[pid])
        pending.extend(children.get(pid, ()))
    return found


def cpu_seconds(processes: Iterable[ProcStat], ticks_per_second: int = CLOCK_TICKS) -> float:
    """User + system seconds of ``processes`` and of the children they reaped."""
    return sum(stat.ticks for stat in processes) / ticks_per_second


def read_stats(proc: Path = PROC) -> dict[int, ProcStat]:
    """Every process of the machine; those that vanish while being read are left out."""
    stats = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = parse_stat((entry / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue
        stats[stat.pid] = stat
    return stats


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds so far of ``root``'s process tree."""
    return cpu_seconds(tree(root, read_stats()))


def parse_cpu_line(line: str) -> int:
    """Busy clock ticks of all CPUs from the ``cpu`` line of ``/proc/stat``: user, nice,
    system, irq and softirq (guest time is inside user; idle, iowait and steal are not
    work done here)."""
    name, *values = line.split()
    if name != "cpu":
        raise ValueError(f"not the total cpu line of /proc/stat: {line!r}")
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in values[:7])
    return user + nice + system + irq + softirq


def machine_busy_seconds(proc: Path = PROC) -> float:
    """Busy CPU seconds of the whole machine since boot, every core and process."""
    with (proc / "stat").open() as stat:
        return parse_cpu_line(stat.readline()) / CLOCK_TICKS
