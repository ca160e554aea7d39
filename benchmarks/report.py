"""Derived figures, text tables, the plot and the JSON of a benchmark run.

Definitions (all CPU figures in core-milliseconds: CPU time summed over threads/processes):

- ideal core-ms per image = onnxruntime's core-ms per image at its cheapest batch size
  + preprocessing core-ms of the benchmark photo with JPEG draft decoding. It is the work
  that cannot be avoided; everything else the server spends is overhead.
- ideal throughput = cores × 1000 / ideal core-ms: every core doing only that work.
- throughput ratio = measured requests/s ÷ ideal throughput. The load generator runs on
  the same cores, so 1.0 is out of reach even for an overhead-free server.
- CPU efficiency = ideal core-ms ÷ the server's core-ms per request (all its processes),
  independent of the load generator.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.load import Level
from benchmarks.micro import BatchResult, PreprocessResult
from benchmarks.server import OTHER_THREADS, ROLES, RUNNER


@dataclass(frozen=True)
class Summary:
    cores: int
    best_batch: BatchResult
    preprocess_ms: float
    saturation: Level
    half_rate: Level | None
    unloaded_before: Level | None = None  # one client, before a burst
    burst: dict[int, int] | None = None  # replies to the burst, by status
    unloaded_after: Level | None = None  # one client, right after the burst
    overload: Level | None = None  # many clients honouring Retry-After

    @property
    def ideal_core_ms(self) -> float:
        return self.best_batch.core_ms_per_image + self.preprocess_ms

    @property
    def ideal_rps(self) -> float:
        return self.cores * 1000 / self.ideal_core_ms

    def throughput_ratio(self, level: Level) -> float:
        return level.rps / self.ideal_rps

    def efficiency(self, level: Level) -> float:
        return self.ideal_core_ms / level.server_core_ms_per_request

    def utilisation(self, level: Level) -> float:
        """Share of all cores busy with the server or the load generator."""
        return (level.server_cpu_s + level.loadgen_cpu_s) / (self.cores * level.window_s)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cores": self.cores,
            "best_batch_size": self.best_batch.batch_size,
            "inference_core_ms_per_image": self.best_batch.core_ms_per_image,
            "preprocess_core_ms": self.preprocess_ms,
            "ideal_core_ms_per_image": self.ideal_core_ms,
            "ideal_rps": self.ideal_rps,
            "saturation": self.saturation.label,
            "saturation_rps": self.saturation.rps,
            "throughput_ratio": self.throughput_ratio(self.saturation),
            "server_core_ms_per_request": self.saturation.server_core_ms_per_request,
            "cpu_efficiency": self.efficiency(self.saturation),
            "half_rate_rps": self.half_rate.rps if self.half_rate else None,
            "half_rate_p99_ms": self.half_rate.percentile(99) if self.half_rate else None,
            "unloaded_p50_ms": _p50(self.unloaded_before),
            "after_burst_p50_ms": _p50(self.unloaded_after),
            "burst_statuses": self.burst,
            "overload_statuses": self.overload.statuses if self.overload else None,
            "overload_goodput_ratio": self.goodput_ratio,
            "overload_p99_ms": self.overload.percentile(99) if self.overload else None,
        }

    @property
    def goodput_ratio(self) -> float | None:
        """200s per second under overload ÷ the saturating throughput."""
        return self.overload.rps / self.saturation.rps if self.overload else None


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Right-aligned plain-text columns; floats get sensible precision."""
    cells = [list(header)] + [[_cell(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def inference_table(results: Sequence[BatchResult]) -> str:
    return table(
        ["batch", "images/s", "ms/batch", "core-ms/image"],
        [(r.batch_size, r.images_per_s, r.cost.wall_ms, r.core_ms_per_image) for r in results],
    )


def preprocessing_table(results: Sequence[PreprocessResult]) -> str:
    return table(
        ["image", "size", "draft core-ms", "full core-ms", "speed-up"],
        [
            (
                r.image,
                f"{r.size[0]}x{r.size[1]}",
                r.draft.cpu_ms,
                r.full.cpu_ms,
                f"{r.full.cpu_ms / r.draft.cpu_ms:.1f}x",
            )
            for r in results
        ],
    )


SERVICE_LEGEND = (
    "c=N: N clients in a closed loop; r=X/s: open loop at X requests/s (half the best c=N).\n"
    "req/s and core-ms/req count 200s only; errors: other replies. batch: mean runner batch.\n"
    "cpu busy: server + load generator, share of all cores; other: the rest of the machine.\n"
    "ratio: req/s / ideal throughput; efficiency: ideal core-ms / server core-ms per request."
)


def service_table(levels: Sequence[Level], summary: Summary) -> str:
    return table(
        [
            "load", "req/s", "errors", "p50 ms", "p95 ms", "p99 ms", "batch",
            "server core-ms/req", "loadgen core-ms/req", "cpu busy", "other", "ratio",
            "efficiency",
        ],
        [
            (
                level.label, level.rps, level.errors, level.percentile(50), level.percentile(95),
                level.percentile(99), level.mean_batch_size, level.server_core_ms_per_request,
                level.loadgen_core_ms_per_request, f"{100 * summary.utilisation(level):.0f}%",
                f"{100 * level.other_cpu_s / (summary.cores * level.window_s):.0f}%",
                summary.throughput_ratio(level), summary.efficiency(level),
            )
            for level in levels
        ],
    )  # fmt: skip


def breakdown_table(level: Level, summary: Summary, batches: Sequence[BatchResult]) -> str:
    """Server CPU per request by role (worker threads, supervisor), beside the work each
    role must do."""
    nearest = min(batches, key=lambda b: abs(b.batch_size - level.mean_batch_size))
    necessary = {RUNNER: nearest.core_ms_per_image, OTHER_THREADS: summary.preprocess_ms}
    rows = []
    for role in ROLES:
        spent = level.core_ms_per_request(role)
        work = necessary.get(role, 0.0)
        rows.append((role, spent, work, spent - work))
    total = level.server_core_ms_per_request
    rows.append(("all", total, sum(necessary.values()), total - sum(necessary.values())))
    return table(["role", "core-ms/req", "necessary", "overhead"], rows) + (
        "\n(event loop: HTTP, routing, validation, replies; runner: onnxruntime at batch "
        f"{nearest.batch_size}, nearest the mean batch {level.mean_batch_size:.1f}; other "
        "threads: decoding and preprocessing with draft; serve: the supervising process)"
    )


def summary_text(summary: Summary) -> str:
    s = summary
    lines = [
        f"ideal core-ms/image: {s.best_batch.core_ms_per_image:.2f} inference "
        f"(batch {s.best_batch.batch_size}) + {s.preprocess_ms:.2f} preprocessing "
        f"= {s.ideal_core_ms:.2f}",
        f"ideal throughput on {s.cores} cores: {s.ideal_rps:.1f} req/s",
        f"saturation ({s.saturation.label}): {s.saturation.rps:.1f} req/s, "
        f"throughput ratio {s.throughput_ratio(s.saturation):.2f}, server "
        f"{s.saturation.server_core_ms_per_request:.2f} core-ms/req, CPU efficiency "
        f"{s.efficiency(s.saturation):.2f}",
    ]
    if s.half_rate:
        lines.append(
            f"half the saturating rate ({s.half_rate.rps:.1f} req/s offered "
            f"{s.half_rate.offered_rps:.1f}): p50 {s.half_rate.percentile(50):.1f} ms, "
            f"p99 {s.half_rate.percentile(99):.1f} ms"
            + _ratio_to_unloaded(s.half_rate.percentile(99), s.unloaded_before)
        )
    if s.unloaded_before and s.unloaded_after:
        before, after = _p50(s.unloaded_before), _p50(s.unloaded_after)
        lines.append(
            f"unloaded p50 {before:.1f} ms before a burst {_mix(s.burst or {})}, "
            f"{after:.1f} ms after it: {after / before:.2f}x"
        )
    if s.overload:
        lines.append(
            f"{s.overload.concurrency} clients honouring Retry-After: replies "
            f"{_mix(s.overload.statuses)}, goodput {s.overload.rps:.1f} req/s = "
            f"{s.goodput_ratio:.2f} of saturation, p99 of the 200s "
            f"{s.overload.percentile(99):.0f} ms"
        )
    return "\n".join(lines)


def _p50(level: Level | None) -> float | None:
    return level.percentile(50) if level else None


def _ratio_to_unloaded(value: float, unloaded: Level | None) -> str:
    return f" = {value / unloaded.percentile(50):.2f}x the unloaded p50" if unloaded else ""


def _mix(statuses: dict[int, int]) -> str:
    """Replies by status, e.g. ``(200: 580, 503: 20)``; 0 counts connection errors."""
    return "(" + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())) + ")"


def plot(levels: Sequence[Level], summary: Summary, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    concurrency = [level.concurrency for level in levels]
    figure, throughput_axis = plt.subplots(figsize=(7, 4.2))
    throughput_axis.plot(concurrency, [lv.rps for lv in levels], "o-", label="throughput")
    throughput_axis.axhline(
        summary.ideal_rps, linestyle="--", color="grey", label=f"ideal ({summary.ideal_rps:.0f}/s)"
    )
    throughput_axis.set_xscale("log", base=2)
    throughput_axis.set_xticks(concurrency, [str(c) for c in concurrency])
    throughput_axis.set_xlabel("concurrent clients (closed loop)")
    throughput_axis.set_ylabel("requests/s")
    throughput_axis.set_ylim(0, summary.ideal_rps * 1.1)
    latency_axis = throughput_axis.twinx()
    latency_axis.plot(concurrency, [lv.percentile(99) for lv in levels], "s-", color="tab:red")
    latency_axis.set_ylabel("p99 latency (ms)", color="tab:red")
    latency_axis.set_ylim(0, None)
    lines = throughput_axis.get_legend_handles_labels()
    latency_line = latency_axis.get_lines()[0]
    throughput_axis.legend([*lines[0], latency_line], [*lines[1], "p99"], loc="upper left")
    throughput_axis.set_title(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(_finite(data), indent=2) + "\n")


def _finite(value: Any) -> Any:
    """NaN is not JSON: write null instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _cell(value: object) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)
