"""Run the Locust scenarios headless against a URL, then gate the run on its SLOs.

    python -m loadtests --url http://127.0.0.1:3000 --users 8 --spawn-rate 4 \\
        --duration 20s --slo loadtests/slo.yaml --out reports/load

Writes ``locust_stats.csv`` (and Locust's other CSVs) and ``report.html`` under ``--out``,
prints the SLO table and exits 1 when an objective is missed (2 when Locust itself fails).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from loadtests import slo
from loadtests.config import API_KEY_FILE_ENV, DETECT_ENV, IMAGES_ENV, images_dir

HERE = Path(__file__).resolve().parent
CSV_PREFIX = "locust"
HTML_NAME = "report.html"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtests", description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True, help="base URL of the Argos server")
    parser.add_argument("--users", type=int, default=8, help="concurrent simulated users")
    parser.add_argument("--spawn-rate", type=float, default=4, help="users started per second")
    parser.add_argument("--duration", default="20s", help="run time, e.g. 20s, 5m")
    parser.add_argument("--slo", type=Path, default=HERE / "slo.yaml", help="SLO file")
    parser.add_argument("--out", type=Path, default=Path("reports/load"), help="report folder")
    parser.add_argument("--images", type=Path, default=None, help="photos to send")
    parser.add_argument("--detect", action="store_true", help="also send POST /detect")
    parser.add_argument(
        "--api-key-file", type=Path, help="file holding an infer key, for a server that needs one"
    )
    return parser.parse_args(argv)


def run_locust(args: argparse.Namespace) -> int:
    """Locust's exit code; request failures are judged by the SLOs, not by Locust."""
    args.out.mkdir(parents=True, exist_ok=True)
    env = os.environ | {IMAGES_ENV: str(args.images or images_dir())}
    if args.detect:
        env[DETECT_ENV] = "1"
    if args.api_key_file:
        env[API_KEY_FILE_ENV] = str(args.api_key_file.resolve())
    command = [
        sys.executable, "-m", "locust",
        "--locustfile", str(HERE / "locustfile.py"),
        "--headless", "--only-summary",
        "--host", args.url,
        "--users", str(args.users),
        "--spawn-rate", str(args.spawn_rate),
        "--run-time", args.duration,
        "--stop-timeout", "10",
        "--csv", str(args.out / CSV_PREFIX),
        "--html", str(args.out / HTML_NAME),
        "--exit-code-on-error", "0",
        "--loglevel", "WARNING",
    ]  # fmt: skip
    return subprocess.run(command, env=env).returncode


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    objectives = slo.load_objectives(args.slo)  # fail on a bad SLO file before the run
    if (code := run_locust(args)) != 0:
        print(f"locust exited with code {code}", file=sys.stderr)
        return 2
    stats_csv = args.out / f"{CSV_PREFIX}_stats.csv"
    results = slo.check(objectives, slo.read_stats(stats_csv))
    print(f"\nSLOs from {args.slo} against {stats_csv}:\n")
    print(slo.report(results))
    missed = [result for result in results if not result.ok]
    print(f"\n{len(results) - len(missed)}/{len(results)} objectives met; HTML report: "
          f"{args.out / HTML_NAME}")  # fmt: skip
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
