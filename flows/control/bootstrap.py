"""Start-up shared by the CLI, the flows and the API: database, migrations, checked registry."""

from __future__ import annotations

from flows.control.database import database_url
from flows.control.migrate import migrate
from flows.control.registry import Registry, load_checked_registry
from flows.control.settings import Settings


def connect_and_migrate(settings: Settings) -> str:
    """The database URL, with the schema brought up to date."""
    url = database_url(settings)
    migrate(url)
    return url


def bootstrap(settings: Settings) -> tuple[str, Registry]:
    """Database URL and the dataset registry checked against it; fails fast on bad config."""
    url = connect_and_migrate(settings)
    return url, load_checked_registry(settings.datasets, url)
