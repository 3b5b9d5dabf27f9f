"""Versioned, idempotent schema migrations: plain SQL files applied once each, in order."""

from __future__ import annotations

from importlib import resources

from flows.control.database import pg_connect

# Any constant works; it only has to be the same for every process migrating this database.
_LOCK_ID = 0x6578_706F_7274


def migration_files() -> list[tuple[str, str]]:
    """(version, sql) for every shipped migration, oldest first."""
    folder = resources.files("flows.control") / "migrations"
    files = sorted(f for f in folder.iterdir() if f.name.endswith(".sql"))
    return [(f.name.removesuffix(".sql"), f.read_text()) for f in files]


def migrate(url: str) -> list[str]:
    """Apply the migrations this database lacks; returns the versions applied."""
    applied: list[str] = []
    with pg_connect(url, autocommit=True) as conn:
        # The advisory lock serialises API replicas and workers that start together.
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS exportflow_migrations"
                " (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r[0] for r in conn.execute("SELECT version FROM exportflow_migrations")}
            for version, sql in migration_files():
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(sql)
                    conn.execute(
                        "INSERT INTO exportflow_migrations (version) VALUES (%s)", (version,)
                    )
                applied.append(version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return applied
