"""The SLO gate: objectives from YAML, checked against a Locust stats CSV."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests import slo
from loadtests.__main__ import main

HEADER = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
    "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
    "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
)


def stats_csv(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "locust_stats.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def row(name: str, requests: int, failures: int, rps: float, p95: int, p99: int) -> str:
    kind = "" if name == slo.AGGREGATED else "POST"
    return (
        f"{kind},{name},{requests},{failures},100,120,10,{p99 + 50},400,{rps},0.0,"
        f"100,120,140,150,{p95 - 20},{p95},{p99 - 10},{p99},{p99 + 50},{p99 + 50},{p99 + 50}"
    )


OBJECTIVES = slo.parse_objectives(
    {
        "Aggregated": {"p95_ms": 2000, "p99_ms": 4000, "max_failure_ratio": 0.01, "min_rps": 5},
        "/classify [raw]": {"p99.9_ms": 5000},
    }
)


def test_a_run_within_every_objective_passes(tmp_path: Path) -> None:
    stats = slo.read_stats(
        stats_csv(
            tmp_path,
            row("/classify [raw]", 400, 0, 20.0, 900, 1500),
            row("Aggregated", 400, 2, 20.0, 900, 1500),
        )
    )
    results = slo.check(OBJECTIVES, stats)
    assert [r.ok for r in results] == [True] * 5
    assert results[2].actual == pytest.approx(0.005)


@pytest.mark.parametrize(
    ("aggregated", "missed"),
    [
        (row("Aggregated", 400, 0, 20.0, 2100, 2500), ("p95_ms",)),
        (row("Aggregated", 400, 0, 20.0, 900, 4100), ("p99_ms",)),
        (row("Aggregated", 400, 5, 20.0, 900, 1500), ("max_failure_ratio",)),
        (row("Aggregated", 40, 0, 2.0, 900, 1500), ("min_rps",)),
        (row("Aggregated", 0, 0, 0.0, 0, 0), ("p95_ms", "p99_ms", "max_failure_ratio")),
    ],
)
def test_a_missed_threshold_fails(tmp_path: Path, aggregated: str, missed: tuple[str]) -> None:
    raw = row("/classify [raw]", 400, 0, 20.0, 900, 1500)
    results = slo.check(OBJECTIVES, slo.read_stats(stats_csv(tmp_path, raw, aggregated)))
    failed = tuple(r.objective.key for r in results if not r.ok)
    assert failed[: len(missed)] == missed
    assert "MISSED" in slo.report(results)


def test_a_request_missing_from_the_stats_fails(tmp_path: Path) -> None:
    stats = slo.read_stats(stats_csv(tmp_path, row("Aggregated", 400, 0, 20.0, 900, 1500)))
    results = slo.check(OBJECTIVES, stats)
    assert [(r.objective.request, r.ok) for r in results if not r.ok] == [
        ("/classify [raw]", False)
    ]
    assert "missing" in slo.report(results)


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"Aggregated": {"p95": 100}},
        {"Aggregated": {"p101_ms": 100}},
        {"Aggregated": {"max_failure_ratio": "low"}},
        {"Aggregated": {"min_rps": -1}},
        {"Aggregated": 5},
    ],
)
def test_bad_slo_files_are_refused(data: dict) -> None:
    with pytest.raises(ValueError):
        slo.parse_objectives(data)


def test_the_shipped_slo_file_parses() -> None:
    objectives = slo.load_objectives(Path(slo.__file__).with_name("slo.yaml"))
    assert {o.key for o in objectives if o.request == slo.AGGREGATED} >= {
        "p95_ms",
        "max_failure_ratio",
    }


def test_the_runner_rejects_a_bad_slo_file_before_starting_locust(tmp_path: Path) -> None:
    bad = tmp_path / "slo.yaml"
    bad.write_text("Aggregated:\n  p95: 100\n")
    with pytest.raises(ValueError, match="unknown objective"):
        main(["--url", "http://127.0.0.1:9", "--slo", str(bad), "--out", str(tmp_path)])
    assert not (tmp_path / "locust_stats.csv").exists()
