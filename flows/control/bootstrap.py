"""Start-up shared by the CLI, the flows and the API: database, migrations, checked registry."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flows.control.database import classify_db_error, database_url
from flows.control.errors import SourceError
from flows.control.migrate import migrate as apply_migrations
from flows.control.registry import Registry, load_checked_registry
from flows.control.settings import Settings

OnStart = Callable[[Path], None] | None


def migrate_database(url: str) -> list[str]:
    """Apply the migrations the database lacks; the versions applied."""
    import psycopg  # only migrating needs it: a CLI export reads through ADBC alone

    try:
        return apply_migrations(url)
    except psycopg.Error as exc:
        err = classify_db_error(exc)
        if isinstance(err, SourceError):
            # Typically a read-only role or replica: say what to change, not only what failed.
            err = SourceError(
                f"cannot apply the schema migrations ({err.message}); "
                "run `exportflow migrate` with a role that may create tables"
            )
        raise err from exc


def connect_and_migrate(settings: Settings, on_start: OnStart = None) -> str:
    """The database URL, with the schema brought up to date."""
    url = database_url(settings, on_start)
    migrate_database(url)
    return url


def bootstrap(
    settings: Settings, *, migrate: bool = False, on_start: OnStart = None
) -> tuple[str, Registry]:
    """Database URL and the dataset registry checked against its catalog; migrates only if asked."""
    # Reading only by default: exports must run against a read replica or a read-only role.
    url = connect_and_migrate(settings, on_start) if migrate else database_url(settings, on_start)
    return url, load_checked_registry(settings.datasets, url)
