"""Notifications once a background export has ended: one task per channel, each retried on
its own; a notification that fails never changes how the export ended."""

from __future__ import annotations

import logging
import time

from prefect import task
from prefect.futures import wait
from prefect.runtime import task_run

from flows.control.errors import is_transient
from flows.control.job_view import requested_channels
from flows.control.notifications import deliver
from flows.orchestration.runtime import Runtime, runtime

log = logging.getLogger("exportflow.notifications")
# A cancelled run's process (or its runner, running the hook) is not held for long.
INLINE_PAUSES = 60.0


def _retry_if_transient(task, task_run, state) -> bool:
    """Retry 5xx answers, timeouts and lost connections; never a refusal."""
    return is_transient(state.result(raise_on_failure=False))


@task(
    retries=3,
    retry_delay_seconds=[2, 10, 30],  # notify_ended sets the configured ones
    retry_condition_fn=_retry_if_transient,
    task_run_name="notify-{channel}-{job_id}",
    persist_result=False,
)
def notify_channel(job_id: str, channel: str, attempts: int) -> str:
    """One attempt (of `attempts`) to tell the job's owner on `channel` that it ended."""
    rt = runtime()
    attempt = task_run.run_count
    return deliver(rt.jobs, rt.settings, rt.storage, job_id, channel, attempt, attempt >= attempts)


def notify_ended(rt: Runtime, job_id: str) -> None:
    """Run the ended job's notification tasks and wait for them; their failures stay theirs."""
    job = rt.jobs.get(job_id)
    channels = requested_channels(job) if job is not None else []
    if not channels:
        return
    delays = rt.settings.notify_retry_delays
    sending = notify_channel.with_options(retries=len(delays), retry_delay_seconds=delays or 0)
    futures = [sending.submit(job_id, channel, len(delays) + 1) for channel in channels]
    wait(futures)
    for channel, future in zip(channels, futures, strict=True):
        if not future.state.is_completed():
            log.warning("%s notification of export %s not delivered", channel, job_id)


def notify_ended_now(rt: Runtime, job_id: str) -> None:
    """The same deliveries in this thread, for where no task can start (a run being
    cancelled: the server aborts its new tasks); only the pauses that fit INLINE_PAUSES."""
    job = rt.jobs.get(job_id)
    delays, total = [], 0.0
    for pause in rt.settings.notify_retry_delays:
        total += pause
        if total > INLINE_PAUSES:
            break
        delays.append(pause)
    for channel in requested_channels(job) if job is not None else []:
        for attempt in range(1, len(delays) + 2):
            last = attempt > len(delays)
            try:
                deliver(rt.jobs, rt.settings, rt.storage, job_id, channel, attempt, last)
                break
            except Exception as exc:
                if last or not is_transient(exc):
                    break
                time.sleep(delays[attempt - 1])


def notify(rt: Runtime, job_id: str, as_tasks: bool = True) -> None:
    """Tell the owner of the just-ended job, if they asked; never raises, since the export
    has ended whatever happens to its notifications."""
    try:
        (notify_ended if as_tasks else notify_ended_now)(rt, job_id)
    except Exception:
        log.exception("notifications of export %s not sent", job_id)
