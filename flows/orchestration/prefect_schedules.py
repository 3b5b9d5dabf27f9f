"""Each saved schedule as a schedule of Prefect's `scheduled-export` deployment.

export_schedules is the source of truth; Prefect holds a copy, one deployment schedule per
row, found by its slug. `sync` rebuilds the copy from the table (`exportflow serve` runs it
at start, so a fresh Prefect database gets every schedule back)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import DeploymentScheduleCreate
from prefect.client.schemas.schedules import CronSchedule
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

from flows.control.errors import InvalidCron, OrchestratorUnavailable
from flows.control.schedules import CRON_HELP, Schedule

SCHEDULE_DEPLOYMENT = "scheduled-export/scheduled-export"
SLUG_PREFIX = "export-schedule-"


def slug(schedule_id) -> str:
    """The Prefect slug of our schedule `schedule_id`."""
    return f"{SLUG_PREFIX}{schedule_id}"


def cron_schedule(cron: str, timezone: str) -> CronSchedule:
    """Prefect's schedule for `cron` in `timezone`; InvalidCron where Prefect disagrees."""
    try:
        return CronSchedule(cron=cron, timezone=timezone)
    except ValueError as exc:
        message = f"cron: {cron!r} is not accepted by the scheduler; give {CRON_HELP}"
        raise InvalidCron(message, detail=str(exc)) from None


@contextlib.contextmanager
def prefect() -> Iterator:
    """A Prefect client; an unreachable or refusing server is OrchestratorUnavailable."""
    try:
        with get_client(sync_client=True) as client:
            yield client
    except (httpx.HTTPError, PrefectHTTPStatusError) as exc:
        raise OrchestratorUnavailable(
            "the scheduler could not be reached", detail=repr(exc)
        ) from exc


def deployment_id(client):
    """The `scheduled-export` deployment's id; OrchestratorUnavailable until it is served."""
    try:
        return client.read_deployment_by_name(SCHEDULE_DEPLOYMENT).id
    except ObjectNotFound:
        raise OrchestratorUnavailable(
            f"the {SCHEDULE_DEPLOYMENT} deployment is not registered",
            detail="start `exportflow up` or `exportflow serve` (or `prefect deploy`)",
        ) from None


def _ours(client, dep_id) -> dict[str, object]:
    """Prefect's schedules of the deployment that mirror ours, by slug."""
    found = client.read_deployment_schedules(dep_id)
    return {s.slug: s for s in found if s.slug and s.slug.startswith(SLUG_PREFIX)}


def _differs(current, schedule: Schedule) -> bool:
    return (
        current.active != schedule.active
        or getattr(current.schedule, "cron", None) != schedule.cron
        or getattr(current.schedule, "timezone", None) != schedule.timezone
        or (current.parameters or {}) != {"schedule_id": str(schedule.id)}
    )


def put(client, schedule: Schedule, dep_id=None, current=None) -> None:
    """Create or update Prefect's copy of `schedule` (left alone when it is current: an
    update deletes the deployment's future runs until the scheduler's next pass)."""
    dep_id = dep_id or deployment_id(client)
    if current is None:
        current = _ours(client, dep_id).get(slug(schedule.id))
    parameters = {"schedule_id": str(schedule.id)}
    wanted = cron_schedule(schedule.cron, schedule.timezone)
    if current is None:
        create = DeploymentScheduleCreate(
            schedule=wanted, active=schedule.active, parameters=parameters, slug=slug(schedule.id)
        )
        client.create_deployment_schedules(dep_id, [create])
    elif _differs(current, schedule):
        client.update_deployment_schedule(
            dep_id, current.id, active=schedule.active, schedule=wanted, parameters=parameters
        )


def remove(client, schedule_id) -> bool:
    """Delete Prefect's copy of schedule `schedule_id`; False when there was none."""
    dep_id = deployment_id(client)
    current = _ours(client, dep_id).get(slug(schedule_id))
    if current is None:
        return False
    with contextlib.suppress(ObjectNotFound):
        client.delete_deployment_schedule(dep_id, current.id)
    return True


def sync(client, schedules: list[Schedule]) -> dict[str, int]:
    """Make Prefect's copies match `schedules` (every row of the table): missing ones
    created, changed ones updated, ones whose row is gone deleted."""
    dep_id = deployment_id(client)
    current = _ours(client, dep_id)
    counts = {"created": 0, "updated": 0, "deleted": 0}
    for schedule in schedules:
        mirror = current.pop(slug(schedule.id), None)
        if mirror is None or _differs(mirror, schedule):
            counts["created" if mirror is None else "updated"] += 1
            put(client, schedule, dep_id, mirror)
    for stale in current.values():
        with contextlib.suppress(ObjectNotFound):
            client.delete_deployment_schedule(dep_id, stale.id)
        counts["deleted"] += 1
    return counts


if __name__ == "__main__":
    from flows.control.database import database_url
    from flows.control.schedules import ScheduleStore
    from flows.control.settings import get_settings

    with prefect() as prefect_client:
        rows = ScheduleStore(database_url(get_settings())).all()
        print(f"{SCHEDULE_DEPLOYMENT}: {sync(prefect_client, rows)}")
