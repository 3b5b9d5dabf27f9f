"""Benchmark: a de-DE CSV export against the plain one, through the engine.

    .venv/bin/python bench/bench_locale.py [--rows 1m] [--repeat 3]

Seeds (once) exportflow_bench_<size> as bench_export.py does, then exports every column of
`products` in this process with `flows.datapath.engine.export`, plain and with locale de-DE
(`;`, decimal commas, dd.MM.yyyy dates, WAHR/FALSCH), in alternating rounds so that a busy
spell of the machine falls on both alike. Prints a markdown table of the median seconds and
the ratio; the goal is de-DE ≤ 1.2x plain.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from bench_export import DEFAULT_SERVER_URL, ensure_database, log, parse_size  # noqa: E402

GOAL = 1.2
VARIANTS = {"plain CSV": {}, "de-DE CSV": {"locale": "de-DE"}}


class CountingSink:
    """Counts the bytes written: the writers' work is measured, not a disk's."""

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data) -> int:
        """Count and drop."""
        self.bytes += len(data)
        return len(data)


def run_once(url: str, options: dict, settings) -> tuple[float, int, int]:
    """One export: seconds, rows, bytes."""
    from flows.control.registry import load_checked_registry
    from flows.datapath.engine import export
    from flows.datapath.request import ExportRequest, plan_export

    registry = load_checked_registry(settings.datasets, url)
    plan = plan_export(ExportRequest(module="products", **options), registry, settings)
    sink = CountingSink()
    started = time.perf_counter()
    result = export(url, plan, sink, settings)
    return time.perf_counter() - started, result.rows, sink.bytes


def main(argv: list[str] | None = None) -> int:
    """Seed, measure both variants in rounds, print the table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", default="1m", help="products rows (default 1m)")
    p.add_argument("--repeat", type=int, default=3, help="rounds; the median is reported")
    p.add_argument(
        "--server-url",
        default=os.environ.get("EXPORTFLOW_BENCH_SERVER_URL", DEFAULT_SERVER_URL),
        help="PostgreSQL server (env EXPORTFLOW_BENCH_SERVER_URL); bench databases go there",
    )
    args = p.parse_args(argv)
    rows = parse_size(args.rows)
    # A database of its own: another bench seeding the shared one cannot change it midway.
    url = ensure_database(args.server_url, rows, f"exportflow_bench_locale_{args.rows.lower()}")

    from flows.control.settings import Settings

    settings = Settings(_env_file=None, database_url=url)
    runs: dict[str, list[float]] = {name: [] for name in VARIANTS}
    out: dict[str, int] = {}
    run_once(url, {}, settings)  # warm: the table's pages and the libraries' first calls
    for round_ in range(max(1, args.repeat)):
        for name, options in VARIANTS.items():
            seconds, done, size = run_once(url, options, settings)
            assert done == rows, f"{name}: {done:,} rows exported, {rows:,} expected"
            runs[name].append(seconds)
            out[name] = size
            log(f"round {round_ + 1}: {name} {seconds:.2f} s, {size / 2**20:.1f} MiB")
    base = statistics.median(runs["plain CSV"])
    print(f"# de-DE CSV against plain CSV, {rows:,} products rows, through the engine\n")
    print("| variant | median s | runs (s) | x plain | MiB out |")
    print("| --- | ---: | --- | ---: | ---: |")
    for name, times in runs.items():
        median = statistics.median(times)
        shown = " ".join(f"{t:.2f}" for t in times)
        print(
            f"| {name} | {median:.2f} | {shown} | {median / base:.2f}x | {out[name] / 2**20:.1f} |"
        )
    ratio = statistics.median(runs["de-DE CSV"]) / base
    print(f"\ngoal: de-DE ≤ {GOAL}x plain: {'ok' if ratio <= GOAL else 'MISS'} ({ratio:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
