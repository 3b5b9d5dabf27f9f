"""A scheduled export through `exportflow up`: Prefect's own scheduler fires the saved
schedule, its run starts the owner's background job, pause and delete reach Prefect."""

from __future__ import annotations

import csv
import io
import time

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId

from flows.orchestration.prefect_schedules import SCHEDULE_DEPLOYMENT, slug
from tests.e2e.conftest import wait_for
from tests.e2e.test_stack import demo_headers
from tests.flows.helpers import stored

NAME = "Tags every minute"


@pytest.fixture(scope="module")
def stack_env() -> dict[str, str]:
    """Every-minute crons allowed; the server's scheduler plans runs every 2 s."""
    return {
        "EXPORTFLOW_SCHEDULE_MIN_INTERVAL_SECONDS": "60",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
    }


def runs_of(schedule_id: str) -> list:
    """The scheduled-export runs Prefect has for this schedule."""
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(SCHEDULE_DEPLOYMENT)
        only = FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[deployment.id]))
        runs = client.read_flow_runs(flow_run_filter=only)
    return [r for r in runs if r.parameters.get("schedule_id") == schedule_id]


def mirrors() -> dict:
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(SCHEDULE_DEPLOYMENT)
        return {s.slug: s for s in client.read_deployment_schedules(deployment.id)}


def test_schedule_fires_its_job_completes_then_pause_and_delete_reach_prefect(stack):
    api, headers = f"http://127.0.0.1:{stack.api_port}", demo_headers(stack)
    body = {
        "name": NAME, "module": "tags", "cron": "* * * * *", "timezone": "Asia/Kolkata",
        "export": {"filters": [{"column": "id", "op": "lte", "value": 30}]},
    }  # fmt: skip
    made = httpx.post(f"{api}/api/schedules", json=body, headers=headers, timeout=30)
    assert made.status_code == 201, made.text
    sid, saved = made.json()["id"], time.monotonic()

    def fired():
        done = [r for r in runs_of(sid) if r.state and r.state.is_completed()]
        return done and done[0]

    # The next minute boundary, the scheduler's pass and the run's start: at most ~75 s.
    run = wait_for("the schedule's first run to complete", fired, 80, every=1)
    assert run.auto_scheduled and run.name == NAME  # Prefect's scheduler made it
    print(f"first run completed {time.monotonic() - saved:.1f} s after saving")

    def job():
        mine = [j for j in stack.rt.jobs.list_owned("demo", 50) if str(j.schedule_id) == sid]
        return mine and mine[-1]

    done = stack.job_final(wait_for("the run's job", job, 10).id, timeout=60)
    assert (done.status, done.strategy, done.total_rows) == ("completed", "background", 30)
    rows = list(csv.reader(io.StringIO(stored(stack.rt, done.file_key).decode(), newline="")))
    assert rows[0][0] == "ID" and [int(r[0]) for r in rows[1:]] == list(range(1, 31))
    seen = httpx.get(f"{api}/api/exports/{done.id}", headers=headers, timeout=10).json()
    assert seen["scheduleId"] == sid and seen["status"] == "completed"

    paused = httpx.patch(f"{api}/api/schedules/{sid}", json={"active": False}, headers=headers)
    assert paused.status_code == 200 and mirrors()[slug(sid)].active is False
    time.sleep(5)  # two passes of the scheduler: nothing new is planned
    assert [r for r in runs_of(sid) if r.state.is_scheduled()] == []

    gone = httpx.delete(f"{api}/api/schedules/{sid}", headers=headers, timeout=30)
    assert gone.status_code == 204 and slug(sid) not in mirrors()
