"""The bodies of /api/schedules: a saved export request, when it runs, and its state."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field

from api.options import ExportOptions, Strict
from api.schemas import Body, JobError
from flows.control.job_view import from_row, row_error
from flows.control.schedules import Schedule

CRON_DOC = "Five fields: minute hour day-of-month month day-of-week, e.g. `0 6 * * 1-5`."


class ScheduleCreate(Strict):
    """POST /api/schedules: the export (as POST /api/{module}/export takes it) and when."""

    name: str = Field(min_length=1, max_length=100, examples=["Weekly products"])
    module: str = Field(examples=["products"])
    cron: str = Field(description=CRON_DOC, examples=["0 6 * * 1"])
    timezone: str = Field("UTC", description="IANA time zone the cron is read in.")
    export: ExportOptions = Field(
        default_factory=ExportOptions, description="The body of POST /api/{module}/export."
    )
    notify: dict[str, Any] | None = Field(
        None, description="Passed as it is to each run's export request."
    )


class ScheduleChange(Strict):
    """PATCH /api/schedules/{id}: pause or resume (`active`), rename, or re-time."""

    active: bool | None = None
    name: str | None = Field(None, min_length=1, max_length=100)
    cron: str | None = Field(None, description=CRON_DOC)
    timezone: str | None = None


class ScheduleView(Body):
    """One scheduled export as its owner sees it."""

    id: uuid.UUID
    name: str
    module: str
    cron: str
    timezone: str
    active: bool
    next_run_at: datetime | None
    request: dict[str, Any]
    notify: dict[str, Any] | None
    error: JobError | None  # why it stopped, until it is resumed
    created_at: datetime
    updated_at: datetime


class ScheduleList(Body):
    """The caller's scheduled exports, oldest first."""

    items: list[ScheduleView]


def schedule_view(schedule: Schedule, next_run_at: datetime | None) -> ScheduleView:
    """The view of a schedule row."""
    error = row_error(schedule.error_code, schedule.error)
    return from_row(
        ScheduleView, schedule, next_run_at=next_run_at, request=schedule.options, error=error
    )
