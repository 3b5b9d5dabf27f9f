"""The export_schedules table, and the rules a schedule obeys whichever front saves it:
a five-field cron no more frequent than the minimum, an IANA time zone, a cap per user,
and ownership (another user's schedule is not found, exactly like a missing one)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from itertools import islice, pairwise
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from psycopg.rows import class_row

from flows.control.connections import pooled
from flows.control.errors import (
    CronTooFrequent,
    InvalidCron,
    InvalidTimezone,
    ScheduleNotFound,
    TooManySchedules,
)

# Gaps between this many consecutive firings are checked: enough for any cron whose
# fields repeat within a year, and still a millisecond's work.
GAPS_CHECKED = 500
CRON_HELP = "five fields: minute hour day-of-month month day-of-week, e.g. '0 6 * * 1-5'"


@dataclass
class Schedule:
    """One row of export_schedules."""

    id: uuid.UUID
    user_id: str
    name: str
    module: str
    cron: str
    timezone: str
    options: dict[str, Any]
    notify: dict[str, Any] | None
    active: bool
    error_code: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime


_COLUMNS = ", ".join(f.name for f in fields(Schedule))


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`; InvalidTimezone otherwise."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidTimezone(
            f"timezone: {name!r} is not an IANA time zone; use a name like 'Europe/Berlin'"
        ) from None


def firings(cron: str, tz: str, after: datetime) -> CronSim:
    """The times `cron` fires in `tz` after `after`; InvalidCron when it is not valid."""
    if len(cron.split()) != 5:
        raise InvalidCron(f"cron: {cron!r} is not a cron; give {CRON_HELP}")
    try:
        return CronSim(cron, after.astimezone(zone(tz)))
    except CronSimError as exc:
        raise InvalidCron(f"cron: {cron!r}: {exc}; give {CRON_HELP}") from None


def check_cron(cron: str, tz: str, min_interval_seconds: int, now: datetime) -> None:
    """Refuse a cron that is malformed or fires more often than every min_interval_seconds."""
    times = list(islice(firings(cron, tz, now), GAPS_CHECKED + 1))
    if not times:
        raise InvalidCron(f"cron: {cron!r} never fires; give {CRON_HELP}")
    shortest = min((b - a for a, b in pairwise(times)), default=None)
    if shortest is not None and shortest < timedelta(seconds=min_interval_seconds):
        raise CronTooFrequent(
            f"cron: {cron!r} runs every {_minutes(shortest.total_seconds())}; scheduled exports"
            f" may run at most every {_minutes(min_interval_seconds)}"
        )


def next_run(schedule: Schedule, now: datetime) -> datetime | None:
    """When an active schedule runs next (None when paused)."""
    if not schedule.active:
        return None
    return next(firings(schedule.cron, schedule.timezone, now), None)


def _minutes(seconds: float) -> str:
    minutes = round(seconds / 60)
    return "minute" if minutes == 1 else f"{minutes} minutes"


class ScheduleStore:
    """Reads and updates of export_schedules; each call is one short transaction."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _one(self, sql: str, params: tuple = ()) -> Schedule | None:
        with pooled(self.url) as conn, conn.cursor(row_factory=class_row(Schedule)) as cur:
            return cur.execute(sql, params).fetchone()

    def create(self, user_id: str, values: dict[str, Any], cap: int) -> Schedule:
        """A new active schedule, unless the user already has `cap` (TooManySchedules)."""
        with pooled(self.url) as conn, conn.cursor(row_factory=class_row(Schedule)) as cur:
            # Serialised per user, so two requests at once cannot both pass the cap.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('schedules:' || %s))", (user_id,))
            (count,) = conn.execute(
                "SELECT count(*) FROM export_schedules WHERE user_id = %s", (user_id,)
            ).fetchone()
            if count >= cap:
                raise TooManySchedules(
                    f"you have {count} scheduled exports, at most {cap} allowed;"
                    " delete one before saving another"
                )
            notify = values.get("notify")
            return cur.execute(
                f"INSERT INTO export_schedules"
                f" (id, user_id, name, module, cron, timezone, options, notify)"
                f" VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
                (
                    uuid.uuid4(), user_id, values["name"], values["module"], values["cron"],
                    values["timezone"], json.dumps(values["options"]),
                    None if notify is None else json.dumps(notify),
                ),
            ).fetchone()  # fmt: skip

    def get(self, schedule_id: uuid.UUID | str) -> Schedule | None:
        """The schedule, whoever owns it, or None."""
        if not _is_uuid(str(schedule_id)):
            return None
        return self._one(
            f"SELECT {_COLUMNS} FROM export_schedules WHERE id = %s", (str(schedule_id),)
        )

    def get_owned(self, schedule_id: uuid.UUID | str, user_id: str) -> Schedule:
        """The caller's schedule; ScheduleNotFound for a missing one or another user's."""
        found = self.get(schedule_id)
        if found is None or found.user_id != user_id:
            raise ScheduleNotFound(
                f"no scheduled export {schedule_id}; list your schedules to find its id"
            )
        return found

    def list_owned(self, user_id: str) -> list[Schedule]:
        """The user's schedules, oldest first."""
        with pooled(self.url) as conn, conn.cursor(row_factory=class_row(Schedule)) as cur:
            return cur.execute(
                f"SELECT {_COLUMNS} FROM export_schedules WHERE user_id = %s"
                f" ORDER BY created_at, id",
                (user_id,),
            ).fetchall()

    def all(self) -> list[Schedule]:
        """Every schedule (to mirror them in Prefect)."""
        with pooled(self.url) as conn, conn.cursor(row_factory=class_row(Schedule)) as cur:
            return cur.execute(f"SELECT {_COLUMNS} FROM export_schedules ORDER BY id").fetchall()

    def update(self, schedule_id: uuid.UUID | str, changes: dict[str, Any]) -> Schedule | None:
        """Set name, cron, timezone or active; resuming clears the error that stopped it."""
        allowed = {k: v for k, v in changes.items() if k in ("name", "cron", "timezone", "active")}
        sets = [f"{k} = %s" for k in allowed] + ["updated_at = now()"]
        if allowed.get("active"):
            sets += ["error_code = NULL", "error = NULL"]
        return self._one(
            f"UPDATE export_schedules SET {', '.join(sets)} WHERE id = %s RETURNING {_COLUMNS}",
            (*allowed.values(), str(schedule_id)),
        )

    def stop(self, schedule_id: uuid.UUID | str, code: str, message: str) -> Schedule | None:
        """Pause the schedule for an error its owner must fix (shown on GET)."""
        return self._one(
            f"UPDATE export_schedules SET active = false, error_code = %s, error = %s,"
            f" updated_at = now() WHERE id = %s RETURNING {_COLUMNS}",
            (code, message[:2000], str(schedule_id)),
        )

    def delete(self, schedule_id: uuid.UUID | str) -> bool:
        """Remove the schedule; its jobs stay, no longer linked."""
        with pooled(self.url) as conn:
            cur = conn.execute("DELETE FROM export_schedules WHERE id = %s", (str(schedule_id),))
            return cur.rowcount > 0


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
