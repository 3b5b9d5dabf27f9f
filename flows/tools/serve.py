"""`exportflow serve`: the deployments, served from one process, each run forked."""

from __future__ import annotations

import contextlib

from flows.control.settings import Settings


def serve_deployments(settings: Settings) -> None:
    """Serve `export` (concurrency-limited), `cleanup` (cron), `reconcile` (on an export's
    crash) and `scheduled-export` until SIGTERM or Ctrl-C, with the automation that crashes
    silent runs, after bringing Prefect's copy of the users' schedules up to date."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.exceptions import TerminationSignal
    from prefect.runner import Runner

    from flows.control.bootstrap import bootstrap
    from flows.control.schedules import ScheduleStore
    from flows.orchestration import forked_runs, prefect_schedules
    from flows.orchestration.automations import ensure_zombie_automation
    from flows.orchestration.deployments import specs
    from flows.orchestration.process_env import apply_flow_run_env

    url, _ = bootstrap(settings)  # fail fast on a bad database or datasets file
    # A slot each for cleanup, reconcile and a scheduled firing beside the exports: a crash
    # is resumed, and a schedule fires, even while every export slot is taken.
    # Polled twice a second, not Prefect's once (whole seconds only through its setting):
    # a run parked at the export limit asks for its slot again on each poll, so a queued
    # export waits ~0.25 s less, on average, after a slot frees; a poll is one indexed query.
    runner = Runner(limit=settings.export_concurrency + 3, query_seconds=0.5)
    for flow, options in specs(settings):
        # Served as flows, not deployments: the runner then starts their runs through
        # forked_runs rather than `python -m prefect.engine`. Each is applied here.
        runner.add_flow(flow, **options)
    with get_client(sync_client=True) as client:
        ensure_zombie_automation(client)
        # export_schedules is the truth: a new or wiped Prefect database gets them back.
        counts = prefect_schedules.sync(client, ScheduleStore(url).all())
        print(f"scheduled exports mirrored in Prefect: {counts}", flush=True)
    apply_flow_run_env()  # inherited by the forkserver, and so by every flow-run process
    forked_runs.install()
    with contextlib.suppress(KeyboardInterrupt, TerminationSignal):
        asyncio.run(runner.start())
