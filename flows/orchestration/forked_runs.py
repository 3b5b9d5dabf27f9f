"""Flow runs that `exportflow serve` forks from a process that has already loaded the flows.

A run started as a new interpreter (`python -m prefect.engine`, or Prefect's spawn for a
served flow) spends ~1.3 s of CPU importing Prefect, Polars, Arrow and the flows before it
is Running; on two cores beside four running exports, a queued export waited 2-3 s after
its slot freed. A forkserver imports them once, when serve starts, and forks each run
from there: the run gets a fresh process (its own memory, pid and exit code, killed and
reported crashed like any other) without the imports. Workers' runs still start through
`python -m prefect.engine`; only serve's go through here.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.forkserver
import os
import re
from pathlib import Path
from typing import Any

import prefect.flow_engine as engine
import prefect.runner._starter_direct as direct_starter
from prefect.context import SettingsContext, get_settings_context, serialize_context
from prefect.logging import get_logger
from prefect.settings.context import get_current_settings
from prefect.settings.models.root import Settings
from prefect.utilities.callables import cloudpickle_wrapped_call
from prefect.utilities.processutils import sanitize_subprocess_env

log = get_logger("runner.forked_runs")
STARTED = "flow run {} runs in process {}"

# Imported by the forkserver before it forks anything. A fork keeps only the forking
# thread: no Python thread is started at import, and Polars' and Arrow's pools start on
# use, in the run. Polars' import starts native threads, which a run does without:
# jemalloc's background purgers (jemalloc's fork handlers turn them off in the child,
# which then purges as it allocates: flow-run peaks were unchanged, 267-286 MiB at 1M and
# 10M rows) and its spill-directory cleaner (an export never spills).
PRELOAD = [
    "prefect.flow_engine",
    "flows.orchestration.forked_runs",
    "flows.orchestration.export_flow",
    "flows.orchestration.cleanup_flow",
    "flows.orchestration.reconcile",
    "flows.orchestration.scheduled_flow",
    "adbc_driver_postgresql.dbapi",
]


def _run_flow_with_env(
    *args: Any,
    env: dict[str, str] | None = None,
    remove_env: set[str] | None = None,
    **kwargs: Any,
) -> None:
    """In the forked child: the run's environment and settings, then the flow, as Prefect's
    own subprocess entry does."""
    for key in remove_env or ():
        os.environ.pop(key, None)
    os.environ.update(env or {})
    # Settings are read from the environment when made: the forkserver's are the host's,
    # the run's carry its heartbeat and deployment name.
    settings = SettingsContext(profile=get_settings_context().profile, settings=Settings())
    run_id = getattr(kwargs.get("flow_run"), "id", None)
    with settings, engine.handle_engine_signals(run_id):
        maybe_coro = engine.run_flow(*args, **kwargs)
        if asyncio.iscoroutine(maybe_coro):
            asyncio.run(maybe_coro)


def run_flow_in_forked_process(
    flow: Any,
    flow_run: Any = None,
    parameters: dict[str, Any] | None = None,
    wait_for: Any = None,
    context: dict[str, Any] | None = None,
    env: dict[str, str | None] | None = None,
) -> multiprocessing.Process:
    """prefect.flow_engine.run_flow_in_subprocess, forked from the forkserver."""
    merged_env: dict[str, str | None] = (
        get_current_settings().to_environment_variables(exclude_unset=True)
        | os.environ
        | {"PREFECT__ENABLE_CANCELLATION_AND_CRASHED_HOOKS": "false"}
        | (env or {})
        # As a worker's runs carry it: runtime() tells a run's own process by it.
        | ({"PREFECT__FLOW_RUN_ID": str(flow_run.id)} if flow_run is not None else {})
    )
    sanitized = sanitize_subprocess_env(merged_env)
    control_keys = engine._CONTROL_CHANNEL_ENV_KEYS
    call = cloudpickle_wrapped_call(
        _run_flow_with_env,
        env=engine._runtime_subprocess_env(sanitized),
        remove_env={key for key, value in merged_env.items() if value is None},
        flow=flow,
        flow_run=flow_run,
        parameters=parameters,
        wait_for=wait_for,
        context=context or serialize_context(),
    )
    startup_env = {k: v for k, v in sanitized.items() if k in control_keys}
    process = multiprocessing.get_context("forkserver").Process(
        target=engine._run_serialized_call_with_control_bootstrap,
        args=(call.args[0], startup_env),
    )
    process.start()
    # An operator (and the fault tests) can find the process of a run from serve's log.
    log.info(STARTED.format(getattr(flow_run, "id", None), process.pid))
    return process


def install() -> None:
    """Start the forkserver with the flows loaded and have serve's runner fork its runs."""
    multiprocessing.forkserver.set_forkserver_preload(PRELOAD)
    multiprocessing.forkserver.ensure_running()
    # Prefect's direct starter names this function as its override point.
    direct_starter.run_flow_in_subprocess = run_flow_in_forked_process


def process_of(serve_log: Path, run_id: object) -> int | None:
    """The pid serve's log file names for flow run `run_id`, None if it names none yet."""
    text = serve_log.read_text(errors="replace") if serve_log.exists() else ""
    found = re.findall(re.escape(STARTED.format(run_id, "")) + r"(\d+)", text)
    return int(found[-1]) if found else None
