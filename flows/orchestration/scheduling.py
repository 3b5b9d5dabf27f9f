"""Scheduled exports end to end: saving, changing and deleting one (what the API calls),
and what each of its runs does. Rules live here and in flows/control, not in a front."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from flows.control.admission import Limits, admit
from flows.control.errors import (
    ExportflowError,
    InvalidRequest,
    PermissionDenied,
    PermissionRevoked,
)
from flows.control.schedules import Schedule, check_cron
from flows.control.settings import Settings
from flows.datapath.access import Caller
from flows.datapath.deadline import Deadline
from flows.datapath.engine import count_rows
from flows.datapath.notify import Notify, check_notify
from flows.datapath.request import ExportPlan, ExportRequest, invalid, plan_export
from flows.orchestration import prefect_schedules
from flows.orchestration.runtime import Runtime
from flows.orchestration.submit import submit_background

log = logging.getLogger("exportflow.schedules")
MAX_NAME = 100


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME or "\x00" in name:
        raise InvalidRequest(f"name: give the schedule a name of 1 to {MAX_NAME} characters")
    return name


def _check_notify(
    notify: dict[str, Any] | None, settings: Settings, caller: Caller
) -> dict[str, Any] | None:
    """The export's own notify rules, for the owner's token now: its runs have none."""
    if notify is None:
        return None
    # Stored as jsonb, which cannot hold U+0000: refused here rather than by the database.
    if "\\u0000" in json.dumps(notify):
        raise InvalidRequest("notify: contains U+0000 (a NUL character); remove it")
    if "address" in notify:
        raise InvalidRequest("notify.address: unknown field; remove it")
    try:
        asked = Notify.model_validate(notify)
    except ValidationError as exc:
        raise invalid(exc) from None
    return check_notify(asked, settings, caller).model_dump(mode="json")


def _check_when(rt: Runtime, cron: str, timezone: str) -> None:
    """The cron and zone as our rules and Prefect's scheduler both accept them."""
    check_cron(cron, timezone, rt.settings.schedule_min_interval_seconds, datetime.now(UTC))
    prefect_schedules.cron_schedule(cron, timezone)


def create_schedule(
    rt: Runtime, caller: Caller, name: str, cron: str, timezone: str,
    request: ExportRequest, notify: dict[str, Any] | None = None,
) -> Schedule:  # fmt: skip
    """Validate and save a schedule of `caller`, then mirror it in Prefect (the row is
    removed again when Prefect refuses, so nothing is left for a failed request)."""
    plan = plan_export(request, rt.registry, rt.settings, caller)
    fields = {
        "name": _check_name(name),
        "module": request.module,
        "cron": cron.strip(),
        "timezone": timezone,
        "options": plan.request.model_dump(mode="json", by_alias=True),
        "notify": _check_notify(notify, rt.settings, caller),
    }
    _check_when(rt, fields["cron"], timezone)
    schedule = rt.schedules.create(caller.user_id, fields, rt.settings.max_schedules_per_user)
    try:
        with prefect_schedules.prefect() as client:
            prefect_schedules.put(client, schedule)
    except BaseException:
        rt.schedules.delete(schedule.id)
        raise
    return schedule


def update_schedule(rt: Runtime, caller: Caller, schedule_id: str, changes: dict) -> Schedule:
    """Pause, resume, rename or re-time the caller's schedule; Prefect first, then the row,
    so a refusal by either leaves the two as they were."""
    current = rt.schedules.get_owned(schedule_id, caller.user_id)
    if "name" in changes:
        changes["name"] = _check_name(changes["name"])
    if "cron" in changes or "timezone" in changes:
        changes["cron"] = changes.get("cron", current.cron).strip()
        _check_when(rt, changes["cron"], changes.get("timezone", current.timezone))
    if changes.get("active") and not current.active:
        # Resuming: the export must still be one the caller may run, as of their token now.
        plan_export(ExportRequest.model_validate(current.options), rt.registry, rt.settings, caller)
    wanted = Schedule(**{**vars(current), **changes})
    with prefect_schedules.prefect() as client:
        prefect_schedules.put(client, wanted)
    return rt.schedules.update(current.id, changes) or current


def delete_schedule(rt: Runtime, caller: Caller, schedule_id: str) -> None:
    """Remove the caller's schedule from Prefect, then from the table."""
    current = rt.schedules.get_owned(schedule_id, caller.user_id)
    with prefect_schedules.prefect() as client:
        prefect_schedules.remove(client, current.id)
    rt.schedules.delete(current.id)


def stop_schedule(rt: Runtime, schedule: Schedule, exc: ExportflowError) -> None:
    """Pause a schedule whose runs cannot succeed until its owner acts; the error is kept."""
    stopped = rt.schedules.stop(schedule.id, exc.code, exc.message)
    if stopped is not None:
        with prefect_schedules.prefect() as client:
            prefect_schedules.put(client, stopped)


def _plan_as_owner(rt: Runtime, schedule: Schedule) -> ExportPlan:
    """The saved request planned as its owner, with the permissions they last held; an
    owner who lost the permission gets PermissionRevoked."""
    owner = Caller(schedule.user_id, rt.permissions.last_seen(schedule.user_id))
    request = ExportRequest.model_validate(schedule.options)
    try:
        return plan_export(request, rt.registry, rt.settings, owner)
    except PermissionDenied:
        needed = rt.registry.modules[schedule.module].permission
        raise PermissionRevoked(
            f"the schedule's owner no longer holds {needed!r}, needed to export"
            f" {schedule.module!r}; the schedule is paused: resume it once the permission"
            " is back"
        ) from None


def _job_options(plan: ExportPlan, schedule: Schedule) -> dict[str, Any]:
    options = plan.request.model_dump(mode="json", by_alias=True)
    # Checked when the schedule was saved, with the owner's email address filled in.
    if schedule.notify is not None:
        options["notify"] = schedule.notify
    return options


def run_schedule(rt: Runtime, schedule_id: str) -> str | None:
    """One firing: a background job of the schedule's owner, submitted like the API's;
    None when the schedule was deleted or paused since the run was planned."""
    schedule = rt.schedules.get(schedule_id)
    if schedule is None or not schedule.active:
        log.info("schedule %s is gone or paused: nothing to run", schedule_id)
        return None
    try:
        plan = _plan_as_owner(rt, schedule)
    except (InvalidRequest, PermissionDenied) as exc:
        # No later run can succeed either: the run fails, leaves its row, and stops the schedule.
        job = rt.jobs.create(schedule.user_id, schedule.module,
                             schedule.options.get("format", "csv"), "background",
                             schedule.options, schedule_id=str(schedule.id))  # fmt: skip
        rt.jobs.finish(job.id, "failed", exc.code, exc.message)
        stop_schedule(rt, schedule, exc)
        raise
    limit = rt.settings.direct_timeout_seconds
    total = count_rows(rt.source_url, plan, Deadline.after(limit, "counting the rows timed out"))
    settings = rt.settings
    limits = Limits(settings.rate_limit_per_hour, settings.max_active_background)
    job, _ = admit(rt.jobs, schedule.user_id, "background", _job_options(plan, schedule),
                   limits, schedule_id=str(schedule.id))  # fmt: skip
    submit_background(rt.jobs, job, total)
    return str(job.id)
