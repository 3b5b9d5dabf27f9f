"""The deployments `exportflow serve` runs (prefect.yaml declares the same for workers)."""

from __future__ import annotations

from prefect import Flow
from prefect.types.entrypoint import EntrypointType

from flows.control.settings import Settings
from flows.orchestration.automations import reconcile_trigger
from flows.orchestration.cleanup_flow import cleanup_flow
from flows.orchestration.export_flow import export_flow
from flows.orchestration.reconcile import reconcile_flow
from flows.orchestration.scheduled_flow import scheduled_export

NAMES = (
    "export/export",
    "cleanup/cleanup",
    "reconcile/reconcile",
    "scheduled-export/scheduled-export",
)


def specs(settings: Settings) -> list[tuple[Flow, dict]]:
    """(flow, deployment options) of export (concurrency-limited), cleanup (cron), reconcile
    (on an export's crash) and scheduled-export (the users' schedules), by module path so
    they load from any working directory."""
    by_module = EntrypointType.MODULE_PATH
    return [
        (export_flow, dict(
            name="export",
            concurrency_limit=settings.export_concurrency,
            entrypoint_type=by_module,
            description="One background export job (parameter: job_id).",
        )),
        (cleanup_flow, dict(
            name="cleanup",
            cron=settings.cleanup_cron,
            entrypoint_type=by_module,
            description="Expired files, orphaned parts, crashed runs, failure-rate alert.",
        )),
        (reconcile_flow, dict(
            name="reconcile",
            triggers=[reconcile_trigger()],
            entrypoint_type=by_module,
            description="Resubmits crashed exports at once; started by their Crashed event.",
        )),
        # No schedules given: re-applying keeps the users' (they all carry slugs), which
        # prefect_schedules.sync then checks against export_schedules.
        (scheduled_export, dict(
            name="scheduled-export",
            entrypoint_type=by_module,
            description="One firing of a user's scheduled export (parameter: schedule_id).",
        )),
    ]  # fmt: skip


def deployments(settings: Settings) -> list:
    """The deployments of `specs`."""
    return [flow.to_deployment(**options) for flow, options in specs(settings)]
