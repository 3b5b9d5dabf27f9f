"""Benchmark: the HTTP API's latencies, through the real stack (`exportflow up`).

    .venv/bin/python bench/bench_api.py [--requests 200] [--repeat 3]
    .venv/bin/python bench/bench_api.py --api http://127.0.0.1:8000 --token T [--database-url U]

Without --api it seeds (once) 1M products into the database exportflow_bench_api on
--server-url and starts `exportflow up` on ports 4390/8390 with its own data dir, in
development, with EXPORTFLOW_RATE_LIMIT_PER_HOUR raised (the default 10 an hour would refuse
the benchmark's requests). With --api it uses that stack, which must allow that many too.

1. direct: 1,000 selected ids as CSV, N sequential requests after a warm-up: p50/p95/p99;
2. stream: 100,000 rows (id <= 100000) as CSV: time to the response headers, to the first
   body byte and to the last, against `exportflow export products --filter id:lte:100000`
   (own process, same database) and the same export in-process;
3. background: 1M rows as CSV, POST → completed and POST → Running (stateName), polled;
4. status polls (GET /api/exports/{id}) while that background export and back-to-back
   streamed 100k exports run.
The table (markdown) goes to stdout and is appended to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from api_client import (  # noqa: E402
    STREAM_FILTERS,
    Api,
    direct_latencies,
    load,
    pct,
    stream_once,
    watch,
)
from api_stack import (  # noqa: E402
    Stack,
    engine_export_seconds,
    ensure_database,
    log,
    run_cli_export,
)

HEADING = "## API (bench/bench_api.py)"


def fmt_ms(seconds: float | None) -> str:
    """Seconds as milliseconds."""
    return "n/a" if seconds is None else f"{seconds * 1000:.1f} ms"


def verdict(ok: bool) -> str:
    """ok or MISS."""
    return "ok" if ok else "MISS"


class Rows(list):
    """Table rows: (measurement, figure, goal, load average when it was taken)."""

    def add(self, what: str, figure: str, goal: str = "", at: str | None = None) -> None:
        self.append((what, figure, goal, at or load()))


def run(api: Api, args: argparse.Namespace) -> Rows:
    """Every measurement, in order."""
    rows = Rows()
    log(f"1. direct: {args.warmup} warm-up + {args.requests} requests")
    d = direct_latencies(api, args.requests, args.warmup)
    p50, p95, p99 = (pct(d, p) for p in (50, 95, 99))
    rows.add(
        f"direct 1,000-row CSV, {len(d)} sequential: p50 / p95 / p99",
        f"{fmt_ms(p50)} / {fmt_ms(p95)} / {fmt_ms(p99)}",
        f"p50 ≤ 30 ms {verdict(p50 <= 0.030)}",
    )

    log(f"2. stream 100k x{args.repeat}, CLI x{args.repeat}, in-process engine x{args.repeat}")
    with api.client() as client:
        stream_once(client)  # warm-up: caches and the API's first-use imports
        s = [stream_once(client) for _ in range(args.repeat)]
    stream_load = load()
    first = statistics.median(x["first"] for x in s)
    total = statistics.median(x["total"] for x in s)
    headers = statistics.median(x["headers"] for x in s)
    rows.add(
        f"stream 100,000-row CSV ({s[-1]['bytes'] / 2**20:.1f} MiB), median of {len(s)}:"
        " headers / first body byte",
        f"{fmt_ms(headers)} / {fmt_ms(first)}",
        f"TTFB ≤ 250 ms {verdict(first <= 0.250)}",
        stream_load,
    )
    if not args.database_url:
        rows.add("stream 100,000-row CSV: total", f"{total:.2f} s", "(no --database-url: no CLI)")
    else:
        with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
            target = Path(tmp) / "products.csv"
            cli_args = [a for f in STREAM_FILTERS for a in ("--filter", f)]
            cli = statistics.median(
                run_cli_export(args.database_url, cli_args, target) for _ in range(args.repeat)
            )
            same = hashlib.sha256(target.read_bytes()).hexdigest() == s[-1]["sha256"]
        log(f"   CLI file {'identical to' if same else 'DIFFERS from'} the streamed body")
        rows.add(
            "stream 100,000-row CSV: total / CLI `exportflow export` (own process), ratio",
            f"{total:.2f} s / {cli:.2f} s = {total / cli:.2f}x",
            f"≤ 1.3x CLI {verdict(total <= 1.3 * cli)}" + ("" if same else "; files DIFFER"),
        )
        engine = statistics.median(
            engine_export_seconds(args.database_url, STREAM_FILTERS) for _ in range(args.repeat)
        )
        rows.add(
            "same export in-process (engine only: no start-up, no HTTP)",
            f"{engine:.2f} s (API total = {total / engine:.2f}x)",
        )

    log("3. background 1M, polled every 0.25 s, nothing else running")
    q = watch(api, 0.25, streams=False)
    rows.add(
        "background 1M-row CSV: POST → 202 / → Running / → completed (client, 0.25 s polls)",
        f"{fmt_ms(q['accepted'])} / {q['running'] or 0:.1f} s / {q['completed']:.1f} s",
    )
    rows.add(
        "background 1M-row CSV: createdAt → startedAt / → finishedAt (job row)",
        f"{q['server_started']:.1f} s / {q['server_finished']:.1f} s",
    )

    log(f"4. background 1M polled every {args.poll_interval} s with streamed 100k exports")
    w = watch(api, args.poll_interval, streams=True)
    both = [t for t, busy in w["polls"] if busy]
    every = [t for t, _ in w["polls"]]
    if both:
        p99 = pct(both, 99)
        rows.add(
            f"status poll during stream + background: p50 / p99 ({len(both)} polls,"
            f" {w['streams']} streams)",
            f"{fmt_ms(pct(both, 50))} / {fmt_ms(p99)}",
            f"p99 ≤ 50 ms {verdict(p99 <= 0.050)}",
        )
    rows.add(
        f"status poll, whole background run: p50 / p99 ({len(every)} polls)",
        f"{fmt_ms(pct(every, 50))} / {fmt_ms(pct(every, 99))}",
    )
    rows.add("background 1M-row CSV under that load: POST → completed", f"{w['completed']:.1f} s")
    return rows


def table(rows: Rows) -> str:
    """The markdown table."""
    lines = ["| measurement | figure | goal | load 1/5/15 after |", "| --- | --- | --- | --- |"]
    return "\n".join(lines + [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows])


def append_results(text: str, command: str, started_load: str, heading: str = HEADING) -> Path:
    """Append the run under `heading` of bench/RESULTS.md (added once)."""
    path = HERE / "RESULTS.md"
    current = path.read_text()
    when = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    run_line = f"`{command}` — load average 1/5/15 at the start {started_load}"
    block = [f"### {when}", "", f"{run_line}, nproc {os.cpu_count()}", "", text, ""]
    if heading not in current:
        block = [heading, "", *block]
    path.write_text(current.rstrip("\n") + "\n\n" + "\n".join(block))
    return path


def main() -> int:
    """Set up (or point at) the stack, measure, print and record the table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--api", help="a running API's base URL (then --token is required)")
    p.add_argument("--token", help="a bearer token with products:read for --api")
    p.add_argument("--server-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--database", default="exportflow_bench_api", help="seeded when absent")
    p.add_argument("--database-url", help="with --api: its database, for the CLI comparison")
    p.add_argument("--requests", type=int, default=200, help="direct requests measured")
    p.add_argument("--warmup", type=int, default=20, help="direct requests not measured")
    p.add_argument("--repeat", type=int, default=3, help="streamed and CLI runs (median)")
    p.add_argument("--poll-interval", type=float, default=0.05, help="seconds between polls")
    p.add_argument("--prefect-port", type=int, default=4390)
    p.add_argument("--api-port", type=int, default=8390)
    p.add_argument("--data-dir", type=Path, help="the stack's data dir, kept (default: temporary)")
    p.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = p.parse_args()
    # The recorded command never carries the token itself.
    argv = sys.argv[1:]
    shown = [
        "T" if prev == "--token" else "--token=T" if a.startswith("--token=") else a
        for prev, a in zip(["", *argv][: len(argv)], argv, strict=True)
    ]
    command = shlex.join([".venv/bin/python", "bench/bench_api.py", *shown])
    started_load = load()
    stack, tmp = None, None
    if args.api:
        if not args.token:
            p.error("--api needs --token")
        api = Api(args.api, args.token)
    else:
        args.database_url = ensure_database(args.server_url, args.database, 1_000_000)
        if args.data_dir is None:
            tmp = tempfile.TemporaryDirectory(prefix="exportflow-bench-api-")
        data_dir = args.data_dir or Path(tmp.name)
        stack = Stack(args.database_url, data_dir, args.prefect_port, args.api_port)
        log(f"starting `exportflow up` (API {stack.api}, logs {data_dir}/logs)")
        api = Api(stack.api, stack.start())
    try:
        rows = run(api, args)
    finally:
        if stack is not None:
            log("stopping the stack")
            stack.stop()
        if tmp is not None:
            tmp.cleanup()
    text = table(rows)
    print(f"\n{text}\n\nload average at the start {started_load}, at the end {load()}")
    if not args.no_record:
        log(f"appended to {append_results(text, command, started_load)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
