"""Load: many users' exports at once through the real stack (`exportflow up`), loopback only.

    .venv/bin/python bench/bench_load.py [--background 20] [--users 5] [--direct 200]

It seeds (once) 1M products into exportflow_bench_api (as bench_api.py) and starts
`exportflow up` on ports 4391/8391 with the per-user limits raised.
1. `--background` CSV exports of 100k to 1M rows (`id <= N`) from `--users` users at
   once: all must complete with the right row count; every user polls its exports'
   status meanwhile (p50/p99; goal p99 <= 50 ms);
2. `--direct` 1,000-row direct exports at once: every answer 200 or 429, never a 5xx;
3. the worker's throughput: 4 exports of 250k rows one after another, then 4 at once
   (goal: at once >= 0.8x the rows/s of one after another).
Each phase is bounded by `--deadline` seconds. The table goes to stdout and bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from api_client import Api, load, pct  # noqa: E402
from api_stack import Stack, ensure_database, log  # noqa: E402
from bench_api import Rows, append_results, table  # noqa: E402

FINAL = ("completed", "failed", "cancelled", "expired")
HEADING = "## Load: many users through the stack (bench/bench_load.py)"


def token_for(base: str, user: str) -> str:
    """A development token of `user` (the stack runs in development)."""
    r = httpx.post(f"{base}/api/dev/token", json={"user": user}, timeout=30)
    r.raise_for_status()
    return r.json()["token"]


def background(client: httpx.Client, last_id: int) -> str:
    """Start a background CSV export of the products with id <= last_id; its job id."""
    body = {
        "format": "csv",
        "mode": "background",
        "filters": [{"column": "id", "op": "lte", "value": last_id}],
    }
    r = client.post("/api/products/export", content=json.dumps(body).encode())
    if r.status_code != 202:
        raise RuntimeError(f"background export: {r.status_code} {r.text[:300]}")
    return r.json()["jobId"]


def follow(
    clients: dict[str, httpx.Client], jobs: dict[str, str], deadline: float
) -> tuple[dict, list[float]]:
    """Poll every job through its owner's client until all are final: (views, poll seconds)."""
    views, polls = {}, []
    while len(views) < len(jobs):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(jobs) - len(views)} exports still running at the deadline")
        for job_id, user in jobs.items():
            if job_id in views:
                continue
            started = time.perf_counter()
            r = clients[user].get(f"/api/exports/{job_id}")
            polls.append(time.perf_counter() - started)
            if r.status_code != 200:
                raise RuntimeError(f"status poll: {r.status_code} {r.text[:300]}")
            if r.json()["status"] in FINAL:
                views[job_id] = r.json()
        time.sleep(0.2)
    return views, polls


def many_background(apis: dict[str, Api], n: int, deadline: float, rows: Rows) -> None:
    """Phase 1: n exports from every user in turn, sizes spread from 100k to 1M rows."""
    clients = {user: api.client() for user, api in apis.items()}
    users = list(apis)
    sizes = [100_000 + (900_000 * i) // max(1, n - 1) for i in range(n)]
    started = time.perf_counter()
    jobs, expected = {}, {}
    for i, size in enumerate(sizes):
        user = users[i % len(users)]
        job_id = background(clients[user], size)
        jobs[job_id], expected[job_id] = user, size
    views, polls = follow(clients, jobs, time.monotonic() + deadline)
    took = time.perf_counter() - started
    wrong = [
        j
        for j, v in views.items()
        if v["status"] != "completed" or v["processedRows"] != expected[j]
    ]
    total = sum(expected.values())
    rows.add(
        f"{n} background exports from {len(users)} users",
        f"{len(views) - len(wrong)} of {n} complete, right row counts",
        "all",
    )
    rows.add("  all of them done", f"{took:.1f} s ({total / took:,.0f} rows/s)")
    rows.add(
        "  status polls meanwhile",
        f"p50 {pct(polls, 50) * 1000:.1f} ms, p99 {pct(polls, 99) * 1000:.1f} ms ({len(polls)})",
        "p99 <= 50 ms",
    )
    for c in clients.values():
        c.close()
    if wrong:
        raise RuntimeError(
            f"exports that did not complete with their rows: {[views[j] for j in wrong][:3]}"
        )


def many_direct(api: Api, n: int, rows: Rows) -> None:
    """Phase 2: n direct 1,000-row exports at once."""
    ids = list(range(1, 1_000_001, 1000))
    body = json.dumps({"format": "csv", "scope": "selected", "selectedIds": ids}).encode()

    def one(_: int) -> tuple[int, float]:
        with api.client() as client:
            started = time.perf_counter()
            r = client.post("/api/products/export", content=body)
            return r.status_code, time.perf_counter() - started

    with ThreadPoolExecutor(n) as pool:
        answers = list(pool.map(one, range(n)))
    codes = sorted({code for code, _ in answers})
    ok = sum(code == 200 for code, _ in answers)
    limited = sum(code == 429 for code, _ in answers)
    errors = [code for code, _ in answers if code >= 500]
    seconds = [s for code, s in answers if code == 200]
    rows.add(
        f"{n} direct 1k-row exports at once",
        f"{ok} x 200, {limited} x 429, {len(errors)} x 5xx (codes {codes})",
        "no 5xx",
    )
    if seconds:
        rows.add(
            "  answered 200 in",
            f"p50 {pct(seconds, 50) * 1000:.0f} ms, p99 {pct(seconds, 99) * 1000:.0f} ms",
        )


def throughput(api: Api, deadline: float, rows: Rows) -> None:
    """Phase 3: 4 exports of 250k rows one after another, then 4 at once."""
    with api.client() as client:
        started = time.perf_counter()
        for _ in range(4):
            job = background(client, 250_000)
            follow({"u": client}, {job: "u"}, time.monotonic() + deadline)
        sequential = time.perf_counter() - started
        started = time.perf_counter()
        jobs = {background(client, 250_000): "u" for _ in range(4)}
        follow({"u": client}, jobs, time.monotonic() + deadline)
        together = time.perf_counter() - started
    ratio = sequential / together
    rows.add(
        "4 x 250k one after another", f"{sequential:.1f} s ({1_000_000 / sequential:,.0f} rows/s)"
    )
    rows.add(
        "4 x 250k at once",
        f"{together:.1f} s ({1_000_000 / together:,.0f} rows/s), {ratio:.2f}x",
        ">= 0.8x",
    )


def main() -> int:
    """Start the stack, run the three phases, print and record the table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--server-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--database", default="exportflow_bench_api", help="seeded when absent")
    p.add_argument("--background", type=int, default=20)
    p.add_argument("--users", type=int, default=5)
    p.add_argument("--direct", type=int, default=200)
    p.add_argument("--deadline", type=float, default=600, help="seconds each phase may take")
    p.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = p.parse_args()
    command = " ".join([".venv/bin/python", "bench/bench_load.py", *sys.argv[1:]])
    started_load = load()
    db_url = ensure_database(args.server_url, args.database, 1_000_000)
    rows = Rows()
    with tempfile.TemporaryDirectory(prefix="exportflow-bench-load-") as tmp:
        stack = Stack(db_url, Path(tmp), 4391, 8391)
        # Every user may run all of its exports at once; the deployment still runs 4.
        stack.env["EXPORTFLOW_MAX_ACTIVE_BACKGROUND"] = str(args.background)
        log(f"starting `exportflow up` (API {stack.api}, logs {tmp}/logs)")
        stack.start()
        try:
            apis = {
                f"load-{i}": Api(stack.api, token_for(stack.api, f"load-{i}"))
                for i in range(args.users)
            }
            log(f"{args.background} background exports from {args.users} users")
            many_background(apis, args.background, args.deadline, rows)
            log(f"{args.direct} direct exports at once")
            many_direct(apis["load-0"], args.direct, rows)
            log("4 exports one after another, then at once")
            throughput(apis["load-1"], args.deadline, rows)
        finally:
            log("stopping the stack")
            stack.stop()
    text = table(rows)
    print(f"\n{text}\n\nload average at the start {started_load}, at the end {load()}")
    if not args.no_record:
        log(f"appended to {append_results(text, command, started_load, HEADING)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
