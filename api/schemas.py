"""Response bodies, camelCase on the wire (pydantic aliases), snake_case in Python."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

# The status resource is built below the API: webhooks send the same one.
from flows.control.job_view import ExportStatus, JobError, NotificationStatus, Status, status_view

__all__ = ["ExportStatus", "JobError", "NotificationStatus", "Status", "status_view"]


class Body(BaseModel):
    """camelCase aliases; responses are serialised by alias."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class DownloadLink(Body):
    """A fresh link to a finished export's file, for clients that open it themselves."""

    url: str
    filename: str
    expires_at: datetime


class ExportPage(Body):
    """A page of the caller's exports, newest first; `nextCursor` fetches the next one."""

    items: list[ExportStatus]
    next_cursor: str | None


class Accepted(Body):
    """A background export was started (or found again by its Idempotency-Key): poll it."""

    job_id: uuid.UUID
    status: Status
    total_rows: int | None
    poll_url: str


class ErrorDetail(Body):
    """The error: a stable code, a message saying what to change, optional details."""

    code: str
    message: str
    details: dict[str, Any] | None = None


class ErrorBody(Body):
    """Every error response."""

    error: ErrorDetail


class ModuleColumn(Body):
    """A column the caller may export and filter on, with what its values are."""

    name: str
    label: str
    type: str
    category: str
    labels: list[str] | None
    filterable: bool


class ModuleRelation(Body):
    """A related sheet the caller may add to the module's export (`relations`)."""

    name: str
    label: str
    columns: list[str] = Field(description="The sheet's column labels, in order.")


class Module(Body):
    """A module the caller may export; `columns` in export order, sensitive ones left out."""

    name: str
    label: str
    key: str
    date_column: str | None
    columns: list[ModuleColumn]
    relations: list[ModuleRelation] = []


class ModuleLimits(Body):
    """The bounds an export request must keep, and where the strategies change."""

    direct_max_rows: int
    stream_max_rows: int
    max_ids: int
    max_columns: int
    max_filters: int


class Modules(Body):
    """What the export page offers the caller."""

    modules: list[Module]
    operators: list[str]
    limits: ModuleLimits


class Preview(Body):
    """What an export with these options would be: its rows, strategy and file name."""

    total_rows: int
    strategy: Literal["direct", "stream", "background"]
    format: Literal["csv", "xlsx"]
    filename: str


class DevToken(Body):
    """A development token holding every module's permission."""

    token: str
    user: str
    permissions: list[str]
    expires_at: datetime


class Index(Body):
    """What this service is and where to look next."""

    service: str
    page: str
    docs: str
    health: str
    ready: str
    exports: str


class Health(Body):
    """The process answers."""

    status: Literal["ok"]


class Ready(Body):
    """Every part answered its check: each part's outcome by name."""

    status: Literal["ready"]
    parts: dict[str, str]
