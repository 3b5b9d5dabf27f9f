"""Where the Prefect server `up` starts keeps its state."""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.engine import URL

from flows.control.settings import Settings

# CREATE DATABASE refused for want of the privilege.
_NOT_ALLOWED = {"42501"}


def sibling_database_name(url: str) -> str:
    """Prefect's database beside exportflow's: `<dbname>_prefect`."""
    return f"{conninfo_to_dict(url).get('dbname') or 'postgres'}_prefect"


def asyncpg_url(url: str, dbname: str) -> str:
    """The SQLAlchemy asyncpg URL of database `dbname` on the server `url` points at."""
    parts = conninfo_to_dict(url)
    host = parts.get("host") or "127.0.0.1"
    query = {}
    if host.startswith("/"):
        # A socket directory: asyncpg takes it as a `host` argument, not in the netloc.
        query["host"] = host
        host = None
    return URL.create(
        "postgresql+asyncpg",
        username=parts.get("user"),
        password=parts.get("password") or None,
        host=host,
        port=int(parts["port"]) if parts.get("port") else None,
        database=dbname,
        query=query,
    ).render_as_string(hide_password=False)


def _ensure_database(url: str, dbname: str) -> str | None:
    """Create `dbname` on the server unless it exists; None, or why it cannot be used."""
    with psycopg.connect(url, autocommit=True) as conn:
        # Prefect's migrations create pg_trgm; a server without contrib cannot host it.
        if not conn.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'"
        ).fetchone():
            return "the server has no pg_trgm extension"
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
            return None
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        except psycopg.errors.DuplicateDatabase:
            return None  # another `up` created it a moment ago
        except psycopg.Error as exc:
            if exc.sqlstate in _NOT_ALLOWED:
                return f"no CREATEDB privilege for {dbname}"
            raise
    return None


def prefect_database(settings: Settings, url: str, data_dir: Path) -> tuple[str, str]:
    """The Prefect server's database URL, and a line saying which it is."""
    if settings.prefect_database_url:
        return settings.prefect_database_url, "EXPORTFLOW_PREFECT_DATABASE_URL"
    # PostgreSQL, not SQLite: under a burst of task-state writes SQLite's single writer
    # makes the server log "database is locked" and answer 503s that clients must retry.
    dbname = sibling_database_name(url)
    why_not = _ensure_database(url, dbname)
    if why_not is None:
        return asyncpg_url(url, dbname), f"PostgreSQL database {dbname}"
    path = data_dir / "prefect" / "prefect.db"
    return f"sqlite+aiosqlite:///{path}", f"SQLite {path} ({why_not})"
