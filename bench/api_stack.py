"""What bench/bench_api.py runs against: its seeded database, `exportflow up`, the CLI."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The API counts every export against the user's hourly limit (default 10): the benchmark
# makes hundreds, so its stack raises the limit.
BENCH_RATE_LIMIT = 1_000_000


def log(message: str) -> None:
    """Progress on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def ensure_database(server_url: str, name: str, rows: int) -> str:
    """Database `name` with `rows` products, created and seeded once (as bench_export's)."""
    from bench_export import ensure_database as ensure

    return ensure(server_url, rows, name)


class Stack:
    """`exportflow up` in development mode on the given ports, with its own data dir."""

    def __init__(self, db_url: str, data_dir: Path, prefect_port: int, api_port: int) -> None:
        self.db_url, self.data_dir = db_url, data_dir
        self.api = f"http://127.0.0.1:{api_port}"
        self.log_path = data_dir / "up.log"
        # Nothing inherited from the caller's environment may point the stack elsewhere.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORTFLOW_", "PREFECT_"))}
        env.update(
            EXPORTFLOW_ENV="development",
            EXPORTFLOW_DATABASE_URL=db_url,
            EXPORTFLOW_DATA_DIR=str(data_dir),
            EXPORTFLOW_PREFECT_PORT=str(prefect_port),
            EXPORTFLOW_API_PORT=str(api_port),
            EXPORTFLOW_RATE_LIMIT_PER_HOUR=str(BENCH_RATE_LIMIT),
            EXPORTFLOW_CLEANUP_CRON="0 0 1 1 *",  # no cleanup run competing with the figures
            PYTHONPATH=str(REPO),
        )
        self.env = env
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 300) -> str:
        """Start the stack, wait until it says it is up; its development token."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        out = self.log_path.open("wb")
        cmd = [sys.executable, "-m", "flows.tools.cli", "up"]
        self.proc = subprocess.Popen(
            cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO
        )
        out.close()
        deadline = time.monotonic() + timeout
        while "exportflow is up" not in (text := self.log_path.read_text(errors="replace")):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                sys.exit(f"`exportflow up` did not come up:\n{text}")
            time.sleep(0.5)
        token = re.search(r"^Token:\s+(\S+)", text, re.MULTILINE)
        if token is None:
            self.stop()
            sys.exit(f"`exportflow up` printed no token (EXPORTFLOW_ENV=development?):\n{text}")
        return token.group(1)

    def stop(self) -> None:
        """SIGTERM to `up`, which stops its children in reverse order."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_cli_export(db_url: str, args: list[str], target: Path) -> float:
    """Wall seconds of `exportflow export products ARGS -o target` as its own process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORTFLOW_", "PREFECT_"))}
    env.update(EXPORTFLOW_DATABASE_URL=db_url, PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "flows.tools.cli", "export", "products", *args, "-o", str(target)]
    target.unlink(missing_ok=True)
    started = time.perf_counter()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    subprocess.run(cmd, env=env, cwd=REPO, check=True, **quiet)
    return time.perf_counter() - started


def engine_export_seconds(db_url: str, filters: list[str]) -> float:
    """Wall seconds of the same export in this process (no interpreter start-up, no HTTP)."""
    from flows.control.registry import load_checked_registry
    from flows.control.settings import DEMO_DATASETS, Settings
    from flows.datapath.engine import export
    from flows.datapath.request import parse_request, plan_export

    settings = Settings(_env_file=None)
    registry = load_checked_registry(DEMO_DATASETS, db_url)
    specs = [dict(zip(("column", "op", "value"), f.split(":", 2), strict=True)) for f in filters]
    plan = plan_export(parse_request({"module": "products", "filters": specs}), registry, settings)
    with open(os.devnull, "wb") as sink:
        started = time.perf_counter()
        export(db_url, plan, sink, settings)
        return time.perf_counter() - started
