"""Background exports through the real stack: 1M-row timings, worker memory, kill -9 resume.

    .venv/bin/python bench/kill_resume.py [--trials 10] [--server-url URL] [--prefect-url URL]

Uses the database exportflow_bench_1m on --server-url (seeded by bench/bench_export.py).
Without --prefect-url it starts its own `exportflow up` on free ports with a temporary
data dir; with it, it uses that running stack (which must use the same database).

1. create+submit → completed for a 1M-row CSV and XLSX background export (the API's
   POST does exactly create + submit), submit → Running, and the flow-run process's peak
   RSS (VmHWM, polled);
2. N times: the same CSV request, SIGKILL of the flow-run process at 25 %, 50 % or 90 %
   of its rows in turn; the reconcile automation (on the run's Crashed event) submits the
   next attempt, timed from the kill to that run's Running; the job completes and its
   sha256 is compared with the uninterrupted run's.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg
from psycopg.conninfo import make_conninfo

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from flows.control.jobs import FINAL, Job, JobStore  # noqa: E402
from flows.control.migrate import migrate  # noqa: E402
from flows.control.registry import load_checked_registry  # noqa: E402
from flows.control.settings import DEMO_DATASETS, Settings  # noqa: E402
from flows.datapath.request import ExportRequest, plan_export  # noqa: E402
from flows.orchestration.forked_runs import process_of  # noqa: E402

MIB = 1024 * 1024
KILL_POINTS = (0.25, 0.5, 0.9)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Outcome:
    """One background export, watched to the end."""

    job: Job
    seconds: float
    running_after: float | None
    peak_rss: int
    killed_at_rows: int | None = None
    resumed_after: float | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_stack(db_url: str, data: Path) -> tuple[subprocess.Popen, str]:
    """`exportflow up` on free ports; returns it and its Prefect API URL once it is up."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORTFLOW_", "PREFECT_"))}
    env.update(
        EXPORTFLOW_DATABASE_URL=db_url,
        EXPORTFLOW_DATA_DIR=str(data),
        EXPORTFLOW_PREFECT_PORT=str(port),
        EXPORTFLOW_API_PORT=str(free_port()),
        EXPORTFLOW_CLEANUP_CRON="0 0 1 1 *",  # resumes come from the Crashed automation alone
        EXPORTFLOW_ENV="development",  # the API refuses the default secret otherwise
    )
    out = open(data / "up.log", "wb")  # noqa: SIM115 - lives as long as the stack
    proc = subprocess.Popen([sys.executable, "-m", "flows.tools.cli", "up"], env=env, stdout=out,
                            stderr=subprocess.STDOUT, cwd=REPO)  # fmt: skip
    deadline = time.monotonic() + 300
    while "exportflow is up" not in (data / "up.log").read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"`exportflow up` did not come up:\n{(data / 'up.log').read_text()}")
        time.sleep(0.5)
    return proc, f"http://127.0.0.1:{port}/api"


def flow_run_process(run_id: str, serve_log: Path | None) -> psutil.Process | None:
    """The process running this flow run: the one serve forked, as its log names it, or a
    worker's `python -m prefect.engine` (it carries PREFECT__FLOW_RUN_ID)."""
    if serve_log is not None:
        with contextlib.suppress(psutil.Error):
            return psutil.Process(pid) if (pid := process_of(serve_log, run_id)) else None
        return None
    for p in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if "prefect.engine" in (p.info["cmdline"] or []) and (
                p.environ().get("PREFECT__FLOW_RUN_ID") == run_id
            ):
                return p
    return None


def peak_rss(p: psutil.Process) -> int:
    """The process's high-water RSS so far (VmHWM), else its current RSS."""
    try:
        for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return p.memory_info().rss
    except (OSError, psutil.Error):
        return 0


class Bench:
    def __init__(self, db_url: str, serve_log: Path | None = None) -> None:
        self.serve_log = serve_log  # None: the runs are workers'
        self.jobs = JobStore(db_url)
        self.registry = load_checked_registry(DEMO_DATASETS, db_url)

    def new_job(self, fmt: str) -> Job:
        request = ExportRequest(module="products", format=fmt)
        plan_export(request, self.registry, Settings(_env_file=None))
        body = request.model_dump(by_alias=True)
        return self.jobs.create("bench", "products", fmt, "background", body)

    def run(self, fmt: str, kill_at: float | None = None, timeout: float = 1800) -> Outcome:
        """Create + submit a job, watch it to a final status, optionally SIGKILL it once."""
        from prefect.client.orchestration import get_client

        from flows.orchestration.submit import submit_job

        started = time.monotonic()
        job = self.new_job(fmt)
        run_id = submit_job(job)
        running_after, proc, peak, killed_at, resumed_after = None, None, 0, None, None
        with get_client(sync_client=True) as client:
            while True:
                now = time.monotonic()
                if now - started > timeout:
                    sys.exit(f"job {job.id} did not finish within {timeout:.0f} s")
                if running_after is None and client.read_flow_run(run_id).state.is_running():
                    running_after = now - started
                if proc is None or not proc.is_running():
                    proc = flow_run_process(run_id, self.serve_log)
                if proc is not None:
                    peak = max(peak, peak_rss(proc))
                current = self.jobs.get(job.id)
                if current.status in FINAL:
                    return Outcome(
                        current, now - started, running_after, peak, killed_at, resumed_after
                    )
                total = current.total_rows or 0
                due = kill_at is not None and killed_at is None and proc is not None and total
                if due and current.processed_rows >= kill_at * total:
                    proc.send_signal(signal.SIGKILL)
                    killed_at, killed = current.processed_rows, time.monotonic()
                    log(f"  killed at {killed_at:,} rows; waiting for the automatic resume")
                    run_id, proc = self._resumed(client, job.id, run_id), None
                    resumed_after = time.monotonic() - killed
                    log(f"  next attempt running {resumed_after:.1f} s after the kill")
                time.sleep(0.1)

    def _resumed(self, client, job_id, run_id: str, timeout: float = 180) -> str:
        """The job's next flow run, once it is Running (the reconcile automation's work)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # None between the next attempt and its submission.
            current = self.jobs.get(job_id).flow_run_id
            moved = current is not None and str(current) != run_id
            if moved and client.read_flow_run(current).state.is_running():
                return str(current)
            time.sleep(0.1)
        sys.exit(f"job {job_id} was not resumed within {timeout:.0f} s of the kill")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--server-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--database", default="exportflow_bench_1m")
    p.add_argument(
        "--prefect-url", help="a running stack's API URL, e.g. http://127.0.0.1:4200/api"
    )
    p.add_argument("--trials", type=int, default=10)
    args = p.parse_args()

    db_url = make_conninfo(args.server_url, dbname=args.database)
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT count(*) FROM products").fetchone()[0]
    log(f"{args.database}: {rows:,} products")
    migrate(db_url)
    stack, tmp = None, None
    if args.prefect_url:
        api = args.prefect_url
    else:
        tmp = tempfile.TemporaryDirectory(prefix="exportflow-bench-")
        log("starting `exportflow up`")
        stack, api = start_stack(db_url, Path(tmp.name))
        log(f"stack up at {api}")
    from prefect.settings import PREFECT_API_URL, temporary_settings

    bench = Bench(db_url, Path(tmp.name) / "logs" / "serve.log" if tmp else None)
    lines = []
    try:
        with temporary_settings(updates={PREFECT_API_URL: api}):
            results = {}
            for fmt in ("csv", "xlsx"):
                log(f"{fmt}: {rows:,} rows, uninterrupted")
                results[fmt] = r = bench.run(fmt)
                if r.job.status != "completed":
                    sys.exit(f"{fmt} export ended {r.job.status}: {r.job.error}")
                lines.append(
                    f"| {fmt} | {rows:,} | {r.seconds:.1f} | {r.running_after or 0:.1f} |"
                    f" {r.peak_rss / MIB:.0f} | {r.job.file_bytes / MIB:.1f} |"
                )
            reference = results["csv"].job.sha256
            identical, trial_lines = 0, []
            for n in range(1, args.trials + 1):
                kill_at = KILL_POINTS[(n - 1) % len(KILL_POINTS)]
                log(f"trial {n}/{args.trials}: kill -9 at ~{kill_at:.0%}")
                r = bench.run("csv", kill_at=kill_at)
                same = r.job.status == "completed" and r.job.sha256 == reference
                identical += same
                trial_lines.append(
                    f"| {n} | {kill_at:.0%} | {r.killed_at_rows or 0:,} |"
                    f" {r.resumed_after or 0:.1f} | {r.job.status} | {r.seconds:.1f} |"
                    f" {'identical' if same else 'DIFFERENT'} |"
                )
    finally:
        if stack is not None:
            stack.send_signal(signal.SIGTERM)
            stack.wait(120)
        if tmp is not None:
            tmp.cleanup()

    report = [
        "# Background exports through the stack (exportflow up: Prefect server, serve)",
        "",
        f"- {os.cpu_count()} CPUs; load average at the end {os.getloadavg()[0]:.1f}",
        "",
        "| format | rows | create+submit → completed s | submit → Running s"
        " | flow-run peak RSS MiB | MiB out |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *lines,
        "",
        f"kill -9 and resume: {identical}/{args.trials} trials gave the uninterrupted sha256"
        f" ({reference[:16]}…)",
        "",
        "| trial | kill at | killed at rows | kill → next attempt running s | status"
        " | create → completed s | file |",
        "| ---: | ---: | ---: | ---: | --- | ---: | --- |",
        *trial_lines,
    ]
    text = "\n".join(report)
    print(text)
    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "kill_resume.md").write_text(text + "\n")
    return 0 if identical == args.trials else 1


if __name__ == "__main__":
    sys.exit(main())
