"""Benchmark: exportflow against the floor (psql \\copy) and naive exports of `products`.

    .venv/bin/python bench/bench_export.py [--rows 100k,1m,10m] [--only SUBSTR] [--repeat N]

Creates (once) the databases exportflow_bench_1m / _10m on --server-url, seeds them with
flows.tools.seed, runs every approach as its own subprocess and prints a markdown table of wall
time, peak RSS of the process tree and output size; also written to OUT/results.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
MIB = 1024 * 1024
GOALS = (
    "goals: exportflow CSV ≤ 1.3x floor at 1M, faster than the polars peer at every size,"
    " peak RSS ≤ 300 MiB flat; "
    "XLSX ≤ 8 s at 1M, ≥ 10x faster than xlsxwriter, ≤ 5x floor"
)


@dataclass
class Result:
    """The median of one approach's runs at one size."""

    label: str
    key: str
    rows: int
    seconds: float | None = None
    peak_rss: int = 0
    out_bytes: int = 0
    error: str | None = None
    runs: list[float] = field(default_factory=list)


def parse_size(text: str) -> int:
    """`1m` → 1,000,000; `100k` → 100,000; plain digits as they are."""
    m = re.fullmatch(r"(\d+)([km]?)", text.strip().lower())
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {text!r}: use e.g. 1m, 10m")
    return int(m.group(1)) * {"": 1, "k": 1000, "m": 1_000_000}[m.group(2)]


def size_label(rows: int) -> str:
    """1,000,000 → `1m`; 100,000 → `100k`."""
    if rows % 1_000_000 == 0:
        return f"{rows // 1_000_000}m"
    return f"{rows // 1000}k" if rows % 1000 == 0 else str(rows)


def database_url(server_url: str, name: str) -> str:
    """The server URL pointing at database `name`."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path="/" + name))


def ensure_database(server_url: str, rows: int, name: str | None = None) -> str:
    """Create `name` (exportflow_bench_<size>) if absent; seed it if products is missing or
    differs."""
    import psycopg

    from flows.control.migrate import migrate
    from flows.tools.seed import seed

    name = name or f"exportflow_bench_{size_label(rows)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            log(f"creating database {name}")
            conn.execute(f'CREATE DATABASE "{name}"')
    url = database_url(server_url, name)
    migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        have = None
        if conn.execute("SELECT to_regclass('public.products')").fetchone()[0]:
            have = conn.execute("SELECT count(*) FROM products").fetchone()[0]
        # A database seeded before the demo gained a table is seeded again.
        linked = conn.execute("SELECT to_regclass('public.product_tags')").fetchone()[0]
        if have != rows or not linked:
            log(f"seeding {rows:,} products into {name} (had {have})")
            started = time.monotonic()
            seed(url, rows=rows)
            log(f"seeded in {time.monotonic() - started:.0f} s")
        conn.execute("VACUUM ANALYZE products")
    return url


def machine_info(server_url: str) -> list[str]:
    """nproc, CPU model, memory, PostgreSQL and library versions."""
    import polars
    import psutil
    import psycopg
    import pyarrow

    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with psycopg.connect(server_url) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]
    mem = psutil.virtual_memory().total / 2**30
    return [
        f"- machine: nproc {os.cpu_count()}, {cpu}, {mem:.0f} GiB RAM, {platform.platform()}",
        f"- PostgreSQL {pg}; Python {platform.python_version()}, polars {polars.__version__},"
        f" pyarrow {pyarrow.__version__}",
    ]


def log(message: str) -> None:
    """Progress on stderr."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def warm(url: str) -> None:
    """One unmeasured ordered read, so every approach starts with the same cache."""
    from approaches import ORDERED_SQL, psql_copy

    subprocess.run(psql_copy(url, ORDERED_SQL, "/dev/null"), check=True)


def measure(approach, url: str, rows: int, out_dir: Path, result: Result, timeout: float) -> None:
    """Run `approach` once into `result`: its run's seconds and peak RSS, or its error."""
    from approaches import command
    from measure import run_measured

    env = {**os.environ, "EXPORTFLOW_DATABASE_URL": url}
    target = out_dir / f"{approach.key}-{size_label(rows)}.{approach.ext}"
    target.unlink(missing_ok=True)
    limit = min(timeout, approach.timeout or timeout)
    m = run_measured(command(approach, url, target, rows), env=env, timeout=limit)
    size = target.stat().st_size if target.exists() else 0
    target.unlink(missing_ok=True)
    if m.error is None and size == 0:
        m = type(m)(m.seconds, m.peak_rss, "no output written")
    if m.error:
        result.error = m.error
        return
    result.runs.append(m.seconds)
    result.seconds = statistics.median(result.runs)
    result.peak_rss = max(result.peak_rss, m.peak_rss)
    result.out_bytes = size


def goal_notes(
    r: Result, floor: Result | None, xlsxwriter: Result | None, peer: Result | None = None
) -> str:
    """Pass/miss against the goals, for exportflow's rows."""
    if r.seconds is None or not r.key.startswith("exportflow"):
        return ""
    notes = []
    ratio = r.seconds / floor.seconds if floor and floor.seconds else None

    def check(ok: bool, text: str) -> None:
        notes.append(f"{text} {'ok' if ok else 'MISS'}")

    if r.key in ("exportflow-csv", "exportflow-gzip"):
        if r.key == "exportflow-csv" and ratio is not None and r.rows == 1_000_000:
            check(ratio <= 1.3, "≤1.3x floor")
        if r.key == "exportflow-csv" and peer and peer.seconds:
            check(
                r.seconds < peer.seconds, f"< peer (peer time {peer.seconds / r.seconds:.2f}x ours)"
            )
        check(r.peak_rss <= 300 * MIB, "≤300 MiB")
    elif r.key == "exportflow-xlsx":
        if r.rows == 1_000_000:
            check(r.seconds <= 8, "≤8 s")
        if xlsxwriter and xlsxwriter.seconds:
            speedup = xlsxwriter.seconds / r.seconds
            check(speedup >= 10, f"≥10x xlsxwriter ({speedup:.1f}x)")
        if ratio is not None:
            check(ratio <= 5, "≤5x floor")
    return "; ".join(notes)


def table(results: list[Result]) -> list[str]:
    """The markdown table, floor ratios per size."""
    lines = [
        "| approach | rows | seconds | runs (s) | x floor | peak RSS MiB | MiB out | goal |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | --- |",
    ]
    by_size = {(r.rows, r.key): r for r in results}
    for r in results:
        floor = by_size.get((r.rows, "psql"))
        rows = f"{r.rows:,}"
        if r.seconds is None:
            error = (r.error or "").replace("|", "/")
            lines.append(f"| {r.label} | {rows} | n/a (error: {error}) | | | | | |")
            continue
        ratio = f"{r.seconds / floor.seconds:.2f}x" if floor and floor.seconds else "n/a"
        peer = by_size.get((r.rows, "polars-uri"))
        goal = goal_notes(r, floor, by_size.get((r.rows, "xlsxwriter")), peer)
        runs = " ".join(f"{x:.2f}" for x in r.runs)
        lines.append(
            f"| {r.label} | {rows} | {r.seconds:.2f} | {runs} | {ratio} | {r.peak_rss / MIB:.0f}"
            f" | {r.out_bytes / MIB:.1f} | {goal} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Set up, measure every approach at every size, print and save the table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--rows", default="100k,1m,10m", help="comma-separated sizes (default 100k,1m,10m)"
    )
    p.add_argument(
        "--only",
        help="run only approaches whose key or label contains one of these (comma-separated)",
    )
    p.add_argument("--repeat", type=int, default=1, help="runs per measurement; median reported")
    p.add_argument(
        "--out", type=Path, default=HERE / "out", help="output folder (default bench/out)"
    )
    p.add_argument("--timeout", type=float, default=900, help="seconds before a run is abandoned")
    p.add_argument(
        "--server-url",
        default=os.environ.get("EXPORTFLOW_BENCH_SERVER_URL", DEFAULT_SERVER_URL),
        help="PostgreSQL server (env EXPORTFLOW_BENCH_SERVER_URL); bench databases go there",
    )
    args = p.parse_args(argv)
    sizes = [parse_size(s) for s in args.rows.split(",") if s.strip()]
    sys.path[:0] = [str(REPO), str(HERE)]
    from approaches import APPROACHES, FLOOR

    chosen = [a for a in APPROACHES if a is FLOOR or not args.only or _matches(a, args.only)]
    args.out.mkdir(parents=True, exist_ok=True)

    header = ["# exportflow export benchmark", "", *machine_info(args.server_url)]
    header += [
        f"- {GOALS}",
        f"- runs per measurement: {args.repeat}, in interleaved rounds (median seconds, max RSS)",
    ]
    print("\n".join(header), flush=True)
    results: list[Result] = []
    for rows in sizes:
        url = ensure_database(args.server_url, rows)
        warm(url)
        sized = [a for a in chosen if a.applies(rows)]
        found = {a.key: Result(a.label, a.key, rows) for a in sized}
        # Rounds of one run each, so that a busy spell of the machine falls on every
        # approach alike rather than on whichever was running.
        for round_ in range(max(1, args.repeat)):
            for approach in sized:
                r = found[approach.key]
                if r.error or (approach.kind == "ref" and r.runs):
                    continue
                log(f"{rows:,} rows, run {round_ + 1}: {approach.label}")
                measure(approach, url, rows, args.out, r, args.timeout)
                shown = f"{r.runs[-1]:.2f} s" if r.error is None else f"error: {r.error}"
                log(f"  {shown}, peak RSS {r.peak_rss / MIB:.0f} MiB")
        results += found.values()
    footer = [
        "",
        "Peak RSS: the measured process and its children (psql: psql itself; the server's",
        "backends are not counted). The floor (psql \\copy of the plain select) always runs;",
        "it is the ratio's base. exportflow reads in key order (keyset chunks), as the ordered",
        "psql reference does.",
    ]
    text = "\n".join(["", *table(results), *footer])
    print(text)
    (args.out / "results.md").write_text("\n".join(header) + "\n" + text + "\n")
    log(f"table written to {args.out / 'results.md'}")
    return 0


def _matches(approach, needles: str) -> bool:
    names = (approach.key.lower(), approach.label.lower())
    return any(
        n.strip() and n.strip() in name for n in needles.lower().split(",") for name in names
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_run":
        from approaches import run

        sys.exit(run(sys.argv[2:]))
    sys.exit(main())
