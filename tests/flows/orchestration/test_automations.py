"""The automations that resume lost runs: declared alike for `serve` and for workers, and
created once however often `serve` starts (against the harness's Prefect server)."""

from __future__ import annotations

from pathlib import Path

import yaml
from prefect.client.orchestration import get_client
from prefect.events.schemas.automations import AutomationCore
from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

from flows.orchestration.automations import (
    HEARTBEAT_SECONDS,
    ZOMBIE_AUTOMATION,
    _essence,
    ensure_zombie_automation,
    reconcile_trigger,
    zombie_automation,
)
from flows.orchestration.deployments import NAMES, deployments
from flows.orchestration.process_env import FLOW_RUN_ENV

PREFECT_YAML = Path(__file__).resolve().parents[3] / "prefect.yaml"


def test_workers_get_the_deployments_and_trigger_serve_gets(settings):
    declared = yaml.safe_load(PREFECT_YAML.read_text())["deployments"]
    served = deployments(settings)
    assert [f"{d.flow_name}/{d.name}" for d in served] == list(NAMES)
    assert [d["name"] for d in declared] == [d.name for d in served]
    (trigger,) = next(d["triggers"] for d in declared if d["name"] == "reconcile")
    assert DeploymentEventTrigger.model_validate(trigger) == reconcile_trigger()
    assert [t.name for d in served for t in d.triggers] == [reconcile_trigger().name]
    for d in declared:  # heartbeats and allocators whatever the worker's environment
        assert d["job_variables"]["env"] == FLOW_RUN_ENV, d["name"]
    assert FLOW_RUN_ENV["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == str(HEARTBEAT_SECONDS)


def test_zombie_automation_is_created_once_and_kept_current(harness):
    with get_client(sync_client=True) as client:
        first = ensure_zombie_automation(client)
        assert ensure_zombie_automation(client) == first  # again: the same one
        # Two `serve` processes starting together can both create it: one is left.
        second = str(client.create_automation(zombie_automation()))
        assert len(client.read_automations_by_name(ZOMBIE_AUTOMATION)) == 2
        left = ensure_zombie_automation(client)
        (kept,) = client.read_automations_by_name(ZOMBIE_AUTOMATION)
        assert str(kept.id) == left and left in (first, second)
        assert _essence(kept) == _essence(zombie_automation())
        # One changed by hand (here: disabled) is brought back to what the project needs.
        disabled = {**zombie_automation().model_dump(exclude_unset=True), "enabled": False}
        client.update_automation(kept.id, AutomationCore.model_validate(disabled))
        assert not client.read_automation(kept.id).enabled
        assert ensure_zombie_automation(client) == left
        (kept,) = client.read_automations_by_name(ZOMBIE_AUTOMATION)
        assert kept.enabled and _essence(kept) == _essence(zombie_automation())
        client.delete_automation(kept.id)
