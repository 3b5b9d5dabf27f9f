"""The Prefect automations that turn a lost export run into a resumed one within seconds.

- The `reconcile` deployment's trigger: an export run that crashes (its process killed,
  or marked Crashed by the next automation) or is stopped by a shutting-down worker
  starts one reconcile run at once, which resubmits the job as its next attempt.
- "exportflow: crash silent runs": a run of one of the project's flows that has sent
  no heartbeat for ZOMBIE_AFTER seconds (its whole host vanished, so nobody could report
  it) is set Crashed, which fires the trigger above. Runs send a heartbeat every
  HEARTBEAT_SECONDS (PREFECT_FLOWS_HEARTBEAT_FREQUENCY).

`python -m flows.orchestration.automations` creates the second against PREFECT_API_URL
(clusters); `exportflow up` and `exportflow serve` do so themselves. Both are idempotent.
"""

from __future__ import annotations

from datetime import timedelta

from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

HEARTBEAT_SECONDS = 30  # Prefect's minimum
# Three heartbeats missed: a busy host delays one, never three.
ZOMBIE_AFTER = timedelta(seconds=3 * HEARTBEAT_SECONDS)
ZOMBIE_AUTOMATION = "exportflow: crash silent runs"
FLOWS = ["export", "cleanup", "reconcile"]
_ENDED = ["Completed", "Failed", "Cancelled", "Crashed"]


def reconcile_trigger() -> DeploymentEventTrigger:
    """Run the reconciler once for every export run that crashed or was stopped."""
    return DeploymentEventTrigger(
        name="exportflow: reconcile a crashed export",
        description="A crashed export run is resubmitted from its checkpoint within seconds.",
        expect={"prefect.flow-run.Crashed", "prefect.flow-run.Cancelled"},
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related={"prefect.resource.role": "flow", "prefect.resource.name": "export"},
        posture=Posture.Reactive,
        threshold=1,
        within=timedelta(0),
    )


def zombie_automation() -> AutomationCore:
    """Crash a running flow run of the project that stopped sending heartbeats."""
    heartbeat = "prefect.flow-run.heartbeat"
    return AutomationCore(
        name=ZOMBIE_AUTOMATION,
        description=f"No heartbeat for {ZOMBIE_AFTER.seconds} s: the run's host is gone.",
        enabled=True,  # set, so that an update sends it (the client sends only set fields)
        trigger=EventTrigger(
            after={heartbeat, "prefect.flow-run.Running"},
            expect={heartbeat, *(f"prefect.flow-run.{name}" for name in _ENDED)},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "flow", "prefect.resource.name": FLOWS},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=ZOMBIE_AFTER,
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"no heartbeat for {ZOMBIE_AFTER.seconds} s: its host is gone",
            )
        ],
    )


def _essence(automation) -> dict:
    """What the automation does, without the ids the server or the model assign."""
    fields = {"name", "description", "enabled", "trigger", "actions"}
    essence = automation.model_dump(mode="json", include=fields, exclude={"trigger": {"id"}})
    # The trigger's event names are sets: dumped in an order that differs between processes.
    for key in ("after", "expect", "for_each"):
        essence["trigger"][key] = sorted(essence["trigger"].get(key) or [])
    return essence


def ensure_zombie_automation(client) -> str:
    """Create the automation, or bring the one of that name up to date; its id."""
    wanted = zombie_automation()
    found = client.read_automations_by_name(ZOMBIE_AUTOMATION)  # last updated first
    for extra in found[1:]:  # two processes that started together may both have created it
        client.delete_automation(extra.id)
    if not found:
        return str(client.create_automation(wanted))
    # Left alone when current: the server's trigger evaluation can trip over an automation
    # replaced while it handles an event ("Trigger._automation has been garbage collected").
    if _essence(found[0]) != _essence(wanted):
        client.update_automation(found[0].id, wanted)
    return str(found[0].id)


if __name__ == "__main__":
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as prefect:
        print(f"{ZOMBIE_AUTOMATION}: {ensure_zombie_automation(prefect)}")
