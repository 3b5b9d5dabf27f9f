"""/api/schedules: the caller's scheduled exports (save, list, read, pause/resume, delete).

The rules (validation, cap, ownership, permissions) and Prefect's copy of each schedule
are handled in flows/orchestration/scheduling.py; these handlers only translate."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from anyio import to_thread
from fastapi import APIRouter, Response

from api.deps import CallerDep, ServicesDep
from api.options import to_request
from api.routes.submit import ReadableBody
from api.schedule_schemas import (
    ScheduleChange,
    ScheduleCreate,
    ScheduleList,
    ScheduleView,
    schedule_view,
)
from api.schemas import ErrorBody
from flows.control.schedules import Schedule, next_run
from flows.orchestration import scheduling

ERRORS = {code: {"model": ErrorBody} for code in (401, 403, 404, 409, 422, 503)}
# A body that is not JSON text is a 422 invalid_request here too, not FastAPI's bare 400.
router = APIRouter(tags=["schedules"], responses=ERRORS, route_class=ReadableBody)
VIEW = {"response_model": ScheduleView, "response_model_by_alias": True}


def _view(schedule: Schedule) -> ScheduleView:
    return schedule_view(schedule, next_run(schedule, datetime.now(UTC)))


@router.post("/api/schedules", status_code=201, **VIEW)
async def create_schedule(
    body: ScheduleCreate, services: ServicesDep, caller: CallerDep
) -> ScheduleView:
    """Save an export to run on `cron` in `timezone`, as the caller, with their permissions."""
    request = to_request(body.module, body.export)
    schedule = await to_thread.run_sync(
        scheduling.create_schedule,
        services.rt, caller, body.name, body.cron, body.timezone, request, body.notify,
    )  # fmt: skip
    return _view(schedule)


@router.get("/api/schedules", response_model=ScheduleList, response_model_by_alias=True)
async def list_schedules(services: ServicesDep, caller: CallerDep) -> ScheduleList:
    """The caller's scheduled exports, oldest first."""
    found = await to_thread.run_sync(services.rt.schedules.list_owned, caller.user_id)
    return ScheduleList(items=[_view(s) for s in found])


@router.get("/api/schedules/{schedule_id}", **VIEW)
async def get_schedule(
    schedule_id: uuid.UUID, services: ServicesDep, caller: CallerDep
) -> ScheduleView:
    """One of the caller's schedules; another user's is not found, like a missing one."""
    schedule = await to_thread.run_sync(
        services.rt.schedules.get_owned, schedule_id, caller.user_id
    )
    return _view(schedule)


@router.patch("/api/schedules/{schedule_id}", **VIEW)
async def change_schedule(
    schedule_id: uuid.UUID, body: ScheduleChange, services: ServicesDep, caller: CallerDep
) -> ScheduleView:
    """Pause (`active: false`), resume, rename or re-time one of the caller's schedules."""
    changes = body.model_dump(exclude_none=True)
    schedule = await to_thread.run_sync(
        scheduling.update_schedule, services.rt, caller, str(schedule_id), changes
    )
    return _view(schedule)


@router.delete("/api/schedules/{schedule_id}", status_code=204)
async def delete_schedule(
    schedule_id: uuid.UUID, services: ServicesDep, caller: CallerDep
) -> Response:
    """Delete one of the caller's schedules; the exports it made stay."""
    await to_thread.run_sync(scheduling.delete_schedule, services.rt, caller, str(schedule_id))
    return Response(status_code=204)
