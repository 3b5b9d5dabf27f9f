"""Queued background exports: how long after a slot frees does the next export start?

    .venv/bin/python bench/queued_start.py [--exports 10] [--rows 200000]

Starts its own `exportflow up` (the default export concurrency, 4) on a database of --rows
products (seeded once, like bench/bench_export.py), submits --exports CSV exports at once
and reads each flow run's state history from Prefect. A run beyond the limit waits in
AwaitingConcurrencySlot; the i-th such run is owed the i-th slot freed (a run reaching a
final state). Its wait is split into: slot freed → Pending (the runner's next poll and
the server's slot check) and Pending → Running (the flow-run process starting).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_export import ensure_database
from kill_resume import Bench, log, start_stack

from flows.control.settings import Settings


def first(states, kind: str):
    """When the run first entered a state of this type (None if never)."""
    times = [s.timestamp for s in states if s.type.value == kind]
    return min(times) if times else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--server-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--exports", type=int, default=10)
    args = p.parse_args()

    db_url = ensure_database(args.server_url, args.rows)
    limit = Settings(_env_file=None).export_concurrency
    tmp = tempfile.TemporaryDirectory(prefix="exportflow-queue-")
    log(f"starting `exportflow up` (export concurrency {limit})")
    stack, api = start_stack(db_url, Path(tmp.name))
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.control.jobs import FINAL
    from flows.orchestration.submit import submit_job

    try:
        with temporary_settings(updates={PREFECT_API_URL: api}):
            bench = Bench(db_url)
            jobs = [bench.new_job("csv") for _ in range(args.exports)]
            runs = [submit_job(job) for job in jobs]
            log(f"{len(runs)} exports submitted")
            deadline = time.monotonic() + 1800
            while any(bench.jobs.get(j.id).status not in FINAL for j in jobs):
                if time.monotonic() > deadline:
                    sys.exit("the exports did not finish within 30 minutes")
                time.sleep(0.5)
            with get_client(sync_client=True) as client:
                # A job is recorded completed a moment before its run reports Completed.
                while not all(client.read_flow_run(r).state.is_final() for r in runs):
                    time.sleep(0.5)
                history = {r: client.read_flow_run_states(r) for r in runs}
    finally:
        stack.send_signal(signal.SIGTERM)
        stack.wait(120)
        tmp.cleanup()

    statuses = [bench.jobs.get(j.id).status for j in jobs]
    phases = sorted(
        (first(states, "PENDING"), first(states, "RUNNING"), first(states, "COMPLETED"))
        for states in history.values()
    )
    freed = sorted(done for _, _, done in phases)
    rows, waits = [], []
    for i, (pending, running, _) in enumerate(phases):
        start = (running - pending).total_seconds()
        if i < limit:
            rows.append(f"| {i + 1} | at once | – | {start:.1f} | – |")
            continue
        slot = freed[i - limit]
        waits.append((running - slot).total_seconds())
        polled = (pending - slot).total_seconds()
        rows.append(f"| {i + 1} | queued | {polled:.1f} | {start:.1f} | {waits[-1]:.1f} |")
    report = [
        f"# {args.exports} background CSV exports of {args.rows:,} rows through a limit of {limit}",
        "",
        f"- {os.cpu_count()} CPUs; load average at the end {os.getloadavg()[0]:.1f};"
        f" statuses: {', '.join(sorted(set(statuses)))}",
        f"- slot freed → Running for queued runs: median {statistics.median(waits):.1f} s,"
        f" max {max(waits):.1f} s"
        if waits
        else "- no run was queued",
        "",
        "| run (by start) | start | slot freed → Pending s | Pending → Running s"
        " | slot freed → Running s |",
        "| ---: | --- | ---: | ---: | ---: |",
        *rows,
    ]
    print("\n".join(report))
    return 0 if set(statuses) == {"completed"} else 1


if __name__ == "__main__":
    sys.exit(main())
