"""`exportflow up`: the whole stack on one machine (`exportflow serve` is flows/tools/serve.py).

`up` starts, in order, and stops in reverse order on Ctrl-C or SIGTERM:
PostgreSQL (embedded, only when no database URL is configured), a Prefect server on
SQLite under the data dir, a `serve` process running the `export`, `cleanup` and
`reconcile` deployments, and the API (when the `api.main` module exists). Each child logs to
<data_dir>/logs/<name>.log and must answer its health check within a bounded time.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from flows.control.errors import StackError
from flows.control.settings import Settings
from flows.tools.stack_process import Child

API_MODULE = "api.main"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def prefect_url(settings: Settings) -> str:
    """The Prefect server's base URL (the UI); the API is under /api."""
    return f"http://{_url_host(settings.prefect_host)}:{settings.prefect_port}"


def api_url(settings: Settings) -> str:
    """The exportflow API's base URL."""
    return f"http://{_url_host(settings.api_host)}:{settings.api_port}"


def child_env(settings: Settings, database_url: str, data_dir: Path) -> dict[str, str]:
    """What every child gets: this environment, the shared database and the local server."""
    env = dict(os.environ)
    env.update(
        EXPORTFLOW_DATABASE_URL=database_url,
        EXPORTFLOW_DATA_DIR=str(data_dir),
        EXPORTFLOW_STORAGE_URL=settings.resolved_storage_url,
        PREFECT_API_URL=f"{prefect_url(settings)}/api",
        PREFECT_HOME=str(data_dir / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        # A submitted run starts within a second or two.
        PREFECT_RUNNER_POLL_FREQUENCY="1",
        PREFECT_WORKER_QUERY_SECONDS="1",
        # Each finished export's record goes to its flow run's log in the UI.
        PREFECT_LOGGING_EXTRA_LOGGERS="exportflow",
        PYTHONUNBUFFERED="1",
    )
    # Local download links point at the API this stack runs, unless set explicitly.
    env.setdefault("EXPORTFLOW_PUBLIC_API_URL", api_url(settings))
    return env


def _http_ok(url: str, below: int = 300) -> bool:
    return httpx.get(url, timeout=2.0).status_code < below


def _deployments_polled(settings: Settings, since: datetime):
    """Health check of `serve`: every deployment readable, and polled since it started."""

    def check() -> bool:
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from flows.orchestration.deployments import NAMES

        with (
            temporary_settings(updates={PREFECT_API_URL: f"{prefect_url(settings)}/api"}),
            get_client(sync_client=True) as client,
        ):
            for name in NAMES:
                polled = client.read_deployment_by_name(name).last_polled
                if polled is None or polled < since:
                    return False
        return True

    return check


def children(
    settings: Settings, env: dict[str, str], data_dir: Path, prefect_db: str
) -> list[Child]:
    """The processes `up` starts, in start order; the Prefect server keeps state in `prefect_db`."""
    logs = data_dir / "logs"
    (data_dir / "prefect").mkdir(parents=True, exist_ok=True)
    server_env = {**env, "PREFECT_API_DATABASE_CONNECTION_URL": prefect_db}
    # A run parked at the export limit retries its slot every this many seconds (Prefect's
    # default is 30), so a queued export is not left waiting long after a slot frees.
    server_env.setdefault("PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS", "1")
    # Changing any user's schedule drops the deployment's planned runs until the scheduler's
    # next pass (Prefect's default: every 60 s); a shorter pass misses fewer firings.
    server_env.setdefault("PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS", "10")
    host, port = settings.prefect_host, str(settings.prefect_port)
    python = [sys.executable, "-m"]
    parts = [
        Child(
            "prefect-server",
            [
                *python,
                "prefect",
                "server",
                "start",
                "--host",
                host,
                "--port",
                port,
                "--analytics-off",
            ],
            server_env,
            logs / "prefect-server.log",
            lambda: _http_ok(f"{prefect_url(settings)}/api/health"),
        ),
        Child(
            "serve",
            [*python, "flows.tools.cli", "serve"],
            env,
            logs / "serve.log",
            _deployments_polled(settings, datetime.now(UTC)),
        ),
    ]
    # --- API hook: started once the `api` package has its `api.main:app` ---
    if api_available():
        api_port = str(settings.api_port)
        parts.append(
            Child(
                "api",
                [
                    *python,
                    "uvicorn",
                    "api.main:app",
                    "--host",
                    settings.api_host,
                    "--port",
                    api_port,
                ],
                env,
                logs / "api.log",
                lambda: _http_ok(f"{api_url(settings)}/", below=500),
            )
        )
    return parts


def api_available() -> bool:
    """Whether the API module exists yet."""
    try:
        return importlib.util.find_spec(API_MODULE) is not None
    except ModuleNotFoundError:
        return False


def check_port_free(name: str, host: str, port: int) -> None:
    """Fail before starting anything when another process holds the port."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise StackError(
                f"{host}:{port} for the {name} is in use ({exc.strerror}); stop what holds it"
                f" or set another port (EXPORTFLOW_{name.split()[0].upper()}_PORT)"
            ) from None


def _embedded_running(data_dir: Path) -> bool:
    from flows.control.database import pgserver

    postmaster_info = pgserver().postgres_server.PostmasterInfo
    pgdata = data_dir / "pg"
    info = postmaster_info.read_from_pgdata(pgdata) if pgdata.exists() else None
    return info is not None and info.is_running()


def _database(settings: Settings, data_dir: Path) -> tuple[str, bool]:
    """The database URL, and whether `up` started the embedded server."""
    from flows.control.database import embedded_url

    if settings.database_url:
        print("PostgreSQL: EXPORTFLOW_DATABASE_URL", flush=True)
        return settings.database_url, False
    running = _embedded_running(data_dir)
    verb = "reusing the running" if running else "starting the"
    print(f"PostgreSQL: {verb} embedded server in {data_dir / 'pg'}", flush=True)
    return embedded_url(data_dir), not running


def _print_token(settings: Settings, registry) -> None:
    """In development, a token for every module, so the API can be tried at once."""
    if settings.env != "development":
        return
    from flows.control.tokens import mint_token

    perms = sorted({ds.permission for ds in registry.modules.values()})
    token = mint_token(settings, "demo", perms, ttl=12 * 3600)
    print(f"Token:       {token}", flush=True)
    print(f"             (user demo, {' '.join(perms)}; 12 h; development only)", flush=True)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def up(settings: Settings) -> int:
    """Start the stack, print its URLs, supervise it; stop it all on Ctrl-C or SIGTERM."""
    from flows.control.database import stop_embedded
    from flows.control.migrate import migrate
    from flows.control.registry import load_checked_registry
    from flows.tools.prefect_db import prefect_database

    settings.secret("download")  # refuses the default secret outside development, up front
    data_dir = settings.data_dir.resolve()
    check_port_free("Prefect server", settings.prefect_host, settings.prefect_port)
    if api_available():
        check_port_free("API server", settings.api_host, settings.api_port)
    # Explicitly: a shell starting `up` in the background leaves SIGINT ignored.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    started: list[Child] = []
    own_database = False
    code = 0
    try:
        url, own_database = _database(settings, data_dir)
        migrate(url)
        registry = load_checked_registry(settings.datasets, url)
        prefect_db, which = prefect_database(settings, url, data_dir)
        print(f"Prefect:     state in {which}", flush=True)
        env = child_env(settings, url, data_dir)
        for child in children(settings, env, data_dir, prefect_db):
            print(f"starting {child.name} (log: {child.log})", flush=True)
            started.append(child)
            child.start()
            took = child.wait_ready(settings.startup_timeout_seconds)
            print(f"  {child.name} is up (pid {child.pid}, {took:.1f} s)", flush=True)
        print(f"Prefect UI:  {prefect_url(settings)}", flush=True)
        if api_available():
            print(f"API:         {api_url(settings)}", flush=True)
            print(f"Export page: {api_url(settings)}/", flush=True)
            _print_token(settings, registry)
        else:
            print(f"API:         skipped ({API_MODULE} does not exist yet)", flush=True)
        print("exportflow is up; Ctrl-C or SIGTERM stops it", flush=True)
        while True:
            for child in started:
                if (status := child.exit_code()) is not None:
                    raise StackError(f"{child.name} exited with status {status}", child)
            time.sleep(1)
    except KeyboardInterrupt:
        print("stopping ...", flush=True)
    except StackError as exc:
        code = 1
        print(f"error [{exc.code}]: {exc.message}", file=sys.stderr, flush=True)
        if exc.child is not None:
            print(f"--- last lines of {exc.child.log} ---", file=sys.stderr)
            print(exc.child.tail(), file=sys.stderr, flush=True)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for child in reversed(started):
            child.stop(settings.shutdown_timeout_seconds)
            print(f"  stopped {child.name}", flush=True)
        if own_database:
            stop_embedded(data_dir)
            print("  stopped embedded PostgreSQL", flush=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code
