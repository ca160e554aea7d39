"""Service-level objectives: read them from YAML, check them against Locust's stats CSV.

An SLO file maps a request name from the stats CSV (``Aggregated`` is every request of
the run) to objectives::

    Aggregated:
      p95_ms: 2000            # 95th percentile response time at most 2000 ms
      p99_ms: 4000
      max_failure_ratio: 0.01 # failures / requests at most 1 %
      min_rps: 5              # at least 5 requests per second over the run
      min_requests: 50        # at least 50 requests (guards against an empty run)

Percentile keys are ``p50_ms``, ``p66_ms``, ..., ``p99_ms``, ``p99.9_ms``, ``p100_ms``: any
percentile column Locust writes.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

AGGREGATED = "Aggregated"
BOUNDS = {"max_failure_ratio": "failure ratio"}
FLOORS = {"min_rps": "requests/s", "min_requests": "requests"}


@dataclass(frozen=True)
class Objective:
    request: str
    key: str
    limit: float

    @property
    def is_floor(self) -> bool:
        return self.key in FLOORS

    @property
    def label(self) -> str:
        if self.key in BOUNDS:
            return BOUNDS[self.key]
        if self.key in FLOORS:
            return FLOORS[self.key]
        return f"{self.key.removesuffix('_ms')} ms"


@dataclass(frozen=True)
class Result:
    objective: Objective
    actual: float | None  # None: the request name is missing or never succeeded

    @property
    def ok(self) -> bool:
        if self.actual is None:
            return False
        if self.objective.is_floor:
            return self.actual >= self.objective.limit
        return self.actual <= self.objective.limit


def parse_objectives(data: Mapping[str, Mapping[str, float]]) -> list[Objective]:
    """Objectives from the parsed YAML mapping; raises ValueError on unknown keys."""
    if not isinstance(data, Mapping) or not data:
        raise ValueError("an SLO file maps request names to objectives, e.g. 'Aggregated:'")
    objectives = []
    for request, limits in data.items():
        if not isinstance(limits, Mapping) or not limits:
            raise ValueError(f"{request!r}: expected a mapping of objectives")
        for key, limit in limits.items():
            if not (key in BOUNDS or key in FLOORS or _percentile_column(key)):
                raise ValueError(
                    f"{request!r}: unknown objective {key!r}; use p50_ms..p100_ms, "
                    f"{', '.join([*BOUNDS, *FLOORS])}"
                )
            if isinstance(limit, bool) or not isinstance(limit, int | float) or limit < 0:
                raise ValueError(f"{request!r}.{key}: expected a non-negative number")
            objectives.append(Objective(str(request), key, float(limit)))
    return objectives


def load_objectives(path: Path) -> list[Objective]:
    return parse_objectives(yaml.safe_load(Path(path).read_text()))


def read_stats(path: Path) -> dict[str, dict[str, str]]:
    """Rows of a Locust ``*_stats.csv``, by request name."""
    with open(path, newline="") as stream:
        return {row["Name"]: row for row in csv.DictReader(stream)}


def measure(row: Mapping[str, str], key: str) -> float | None:
    """One objective's measured value in a stats row."""
    requests = int(row["Request Count"])
    if key == "min_requests":
        return float(requests)
    if requests == 0:
        return None
    if key == "max_failure_ratio":
        return int(row["Failure Count"]) / requests
    if key == "min_rps":
        return float(row["Requests/s"])
    value = row.get(_percentile_column(key) or "", "N/A")
    return None if value in ("", "N/A") else float(value)


def check(objectives: Iterable[Objective], stats: Mapping[str, Mapping[str, str]]) -> list[Result]:
    return [
        Result(o, measure(stats[o.request], o.key) if o.request in stats else None)
        for o in objectives
    ]


def report(results: Iterable[Result]) -> str:
    """A plain-text table: request, objective, limit, measured, verdict."""
    rows = [("request", "objective", "limit", "measured", "")]
    for result in results:
        objective = result.objective
        sign = ">=" if objective.is_floor else "<="
        rows.append(
            (
                objective.request,
                objective.label,
                f"{sign} {_number(objective.limit)}",
                "missing" if result.actual is None else _number(result.actual),
                "ok" if result.ok else "MISSED",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def _percentile_column(key: str) -> str | None:
    """``p95_ms`` → ``95%``; ``p99.9_ms`` → ``99.9%``; None for anything else."""
    if not (key.startswith("p") and key.endswith("_ms")):
        return None
    number = key[1:-3]
    try:
        value = float(number)
    except ValueError:
        return None
    return f"{number}%" if 0 < value <= 100 else None


def _number(value: float) -> str:
    if value == int(value) and abs(value) >= 1:
        return str(int(value))
    return f"{value:.4g}"
