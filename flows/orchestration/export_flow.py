"""export_flow(job_id, attempt): one background export as a Prefect flow run, resumable
chunk by chunk; every job update it makes is fenced by its attempt."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from contextlib import closing
from contextvars import ContextVar
from itertools import chain
from operator import itemgetter
from typing import TYPE_CHECKING

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.client.orchestration import get_client
from prefect.futures import PrefectFuture, wait
from prefect.runtime import flow_run
from prefect.states import Completed
from prefect.task_runners import ThreadPoolTaskRunner

from flows.control.errors import JobNotFound, Superseded, is_transient
from flows.control.jobs import ACTIVE
from flows.control.settings import Settings
from flows.datapath.deadline import Deadline
from flows.datapath.engine import count_rows as count_all
from flows.datapath.keyset import Bound, ChunkSizing, keyset_chunks
from flows.datapath.source import Source, key_ranges
from flows.datapath.transform import Transform
from flows.datapath.writers import file_extension
from flows.orchestration.checkpoint import Checkpoint, assemble, final_key
from flows.orchestration.job_run import JobRun, end_job, remove_job_files
from flows.orchestration.notify_task import notify
from flows.orchestration.runtime import runtime

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

RETRY_DELAYS = [1, 5, 15]
# Pauses before the run resumes itself after a transient fault its tasks could not ride
# out: about a minute in all, the time a database failover or restart takes.
RESUME_PAUSES = (2, 5, 10, 20, 30)

# The running attempt's deadline. Prefect runs each task in a copy of the flow's context,
# so the tasks' reads end with the run's time without a task parameter carrying it.
ATTEMPT_DEADLINE: ContextVar[Deadline | None] = ContextVar("attempt_deadline", default=None)


def attempt_deadline(settings: Settings) -> Deadline:
    """The time limit of one attempt at a background export, starting now."""
    seconds = settings.background_timeout_seconds
    return Deadline.after(
        seconds,
        f"the export took longer than the {seconds:g} s a background export may take;"
        " export fewer rows (filters, fewer columns)",
    )


def retry_if_transient(task, task_run, state) -> bool:
    """Retry lost connections and storage hiccups; fail at once on anything else."""
    return is_transient(state.result(raise_on_failure=False))


def _run_name() -> str:
    job_id = flow_run.parameters["job_id"]
    if flow_run.name.endswith(f"-{job_id}"):
        # Named by submit_job already: kept, so that nothing is built or read before the
        # run reports Running (Prefect names a run just before that).
        return flow_run.name
    job = runtime().jobs.get(job_id)
    return f"export-{job.module if job else 'unknown'}-{job_id}"


def _job_run(job_id: str, attempt: int) -> JobRun:
    rt = runtime()
    job = rt.jobs.get(job_id)
    if job is None:
        raise JobNotFound(f"no export job {job_id}")
    return JobRun(rt, job, attempt)


@task(
    retries=1,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_if_transient,
    task_run_name="count-{job_id}",
    persist_result=False,
)
def count_rows(job_id: str, attempt: int) -> int:
    """How many rows the job exports, related sheets included (for progress only)."""
    run = _job_run(job_id, attempt)
    return count_all(run.rt.source_url, run.plan, ATTEMPT_DEADLINE.get())


@task(
    retries=3,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_if_transient,
    task_run_name="chunk-{index}",
    persist_result=False,
)
def export_chunk(
    job_id: str, attempt: int, index: int, lo: str | None, hi: str, rows: int, limit: int | None
) -> tuple[int, int]:
    """Read rows lo < key <= hi in ranges of `limit` rows (the CLI's chunks), transform
    them and store them as chunk file `index`; returns the rows and the first range's
    Arrow bytes (which size the chunks after the first)."""
    run = _job_run(job_id, attempt)
    run.check_loaded()  # the row was just read: no second query before the read
    sizes: list[int] = []
    with Source(run.rt.source_url, run.plan, ATTEMPT_DEADLINE.get()) as src:
        tables = key_ranges(src, lo, hi, rows, limit)
        stored = run.files.write(run.rt.settings, run.plan, index, _frames(run, tables, sizes))
    return stored, sizes[0] if sizes else 0


def _frames(
    run: JobRun, tables: Iterator[pa.Table], sizes: list[int], plan=None
) -> Iterator[pl.DataFrame]:
    """Each table transformed (as the module's rows, or `plan`'s: a related sheet), its
    Arrow bytes noted; one range in memory at a time."""
    transform = Transform(plan or run.plan)
    for table in tables:
        if not sizes:
            run.ensure_owner()  # after the first read, before anything is stored
        sizes.append(table.nbytes)
        frame = transform(table)
        del table  # not held while the frame is encoded and the next range read
        yield frame


class Progress:
    """Rows done, to the job row and the run's progress artifact, in one place. The count
    runs beside the reads and only feeds this figure: until it is in, the total is unknown."""

    def __init__(self, run: JobRun, total: PrefectFuture) -> None:
        self.run, self.total, self.known = run, total, None
        self.artifact = create_progress_artifact(
            progress=0.0, key=f"export-progress-{run.job_id}", description="Starting"
        )

    def __call__(self, checkpoint: Checkpoint) -> None:
        self.run.record(checkpoint)
        done = checkpoint.rows
        if self.known is None and self.total.state.is_completed():
            self.known = self.total.result()
            self.run.set_total(self.known)
        if self.known is None:
            update_progress_artifact(self.artifact, 0.0, f"{done:,} rows (total not known yet)")
            return
        pct = 100.0 * done / self.known if self.known else 100.0
        update_progress_artifact(self.artifact, min(pct, 100.0), f"{done:,} of {self.known:,} rows")


def _chunks(
    run: JobRun, checkpoint: Checkpoint, progress: Progress, limit: Deadline, running: deque
) -> Iterator[dict]:
    """Every chunk after the checkpoint, each a task, read ahead; each is recorded, then
    handed on for the file, in key order."""
    settings = run.rt.settings
    sizing = ChunkSizing.from_settings(settings, checkpoint.limit, settings.chunk_ranges)

    def submit(bound: Bound):
        args = (bound.index, bound.lo, bound.hi, bound.rows, sizing.limit)
        future = export_chunk.submit(run.job_id, run.attempt, *args)
        running.append(future)
        return future

    with Source(run.rt.source_url, run.plan, limit) as probe:
        chunks = keyset_chunks(
            probe, submit, sizing, itemgetter(1), checkpoint.last_key,
            checkpoint.next_index, settings.read_connections, limit,
        )  # fmt: skip
        for bound, (rows, _) in chunks:
            checkpoint.limit = sizing.limit
            checkpoint.add(bound.index, bound.lo, bound.hi, rows)
            progress(checkpoint)
            yield checkpoint.chunks[-1]
    # Related sheets follow the module's rows, each resuming after its own last chunk.
    from flows.orchestration.related import related_chunks

    yield from related_chunks(run, checkpoint, progress, limit, running)
    limit.check()  # past the time limit the file is not committed


def _sweep(run: JobRun, running: deque) -> None:
    """Remove the ended job's files again once its running chunk tasks are done."""
    # A task past its owner check may have been writing when the job ended. Their reads
    # end by the deadline at the latest, so the wait is bounded.
    try:
        wait(list(running))
        remove_job_files(run.rt, run.job_id)
    except Exception as exc:  # the export's own error is what the run reports
        get_run_logger().warning(
            "files of job %s not removed again: %r; the cleanup flow removes them later",
            run.job_id,
            exc,
        )


def _being_cancelled() -> bool:
    """Whether this run is being cancelled (the server then aborts tasks that try to start)."""
    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(flow_run.id).state
    except Exception:
        return False
    return state is not None and (state.is_cancelling() or state.is_cancelled())


def stopped_by_shutdown(state) -> bool:
    """A run cancelled because its runner or worker shut down, not because a user asked."""
    return "shutting down" in (state.message or "").lower()


def _on_cancellation(flow, flow_run, state) -> None:
    if stopped_by_shutdown(state):
        return  # the job stays active with its checkpoint; the reconciler resubmits it
    rt = runtime()
    job_id = flow_run.parameters["job_id"]
    attempt = flow_run.parameters.get("attempt")
    if end_job(rt, job_id, "cancelled", "cancelled", "cancelled by request", attempt):
        notify(rt, job_id, as_tasks=False)  # the run is over: no task can start


def _superseded(exc: Superseded):
    get_run_logger().warning("%s; this run stops and writes nothing more", exc.message)
    return Completed(name="Superseded", message=exc.message)


@flow(
    name="export",
    flow_run_name=_run_name,
    persist_result=False,
    task_runner=ThreadPoolTaskRunner(max_workers=3),
    on_cancellation=[_on_cancellation],
)
def export_flow(job_id: str, attempt: int | None = None):
    """Export one job's rows to its file, resuming from its checkpoint. `attempt` fences
    the run (the submitter passes it); None takes the job's current attempt."""
    rt = runtime()
    limit = attempt_deadline(rt.settings)
    # A fault that outlasts the tasks' retries (a database restart, storage down for a
    # while) resumes this same run from its checkpoint after a pause; the job stays
    # processing meanwhile. Only a terminal error, or the last pause, ends it.
    for pause in (*RESUME_PAUSES, None):
        try:
            return _export(rt, job_id, attempt, limit, last=pause is None)
        except _Resume as resume:
            exc = resume.__cause__
            get_run_logger().warning(
                "%s (%s); resuming from the checkpoint in %s s", exc, exc.detail, pause
            )
            time.sleep(pause)


class _Resume(Exception):
    """The pass left the job active after a transient fault (its cause): resume it."""


def _export(rt, job_id: str, attempt: int | None, limit: Deadline, last: bool):
    """One pass at the job from its checkpoint; a transient error leaves the job active
    unless this is the `last` pass."""
    job = rt.jobs.get(job_id)
    if job is None:
        raise JobNotFound(f"no export job {job_id}")
    if job.status not in ACTIVE:
        return Completed(message=f"job already {job.status}")
    run = JobRun(rt, job, job.attempt if attempt is None else attempt)
    # The loop holds at most `read_connections` chunk futures: the only ones still running.
    running: deque[PrefectFuture] = deque(maxlen=rt.settings.read_connections)
    scope = ATTEMPT_DEADLINE.set(limit)
    try:
        run.claim(flow_run.id)
        total = count_rows.submit(job_id, run.attempt)
        checkpoint = run.checkpoint()
        if checkpoint.chunks:
            get_run_logger().info(
                "resuming after key %s (%s rows stored)", checkpoint.last_key, checkpoint.rows
            )
        # The file is written while the chunks are read: each chunk is appended once its
        # predecessors are, from its chunk file, which stays until the file is committed.
        key = final_key(job_id, run.job.module, file_extension(run.plan.request))
        reading = _chunks(run, checkpoint, Progress(run, total), limit, running)
        with closing(reading):
            chunks = chain(list(checkpoint.chunks), reading)
            result = assemble(run.files, rt.settings, run.plan, chunks, key)
    except Superseded as exc:
        return _superseded(exc)
    except Exception as exc:
        # Decided once, here: the job is either left active for the next pass or ended.
        cancelled = _being_cancelled()
        if not (last or cancelled or limit.expired()) and is_transient(exc):
            wait(list(running))  # no chunk of this pass may still be writing on resume
            raise _Resume from exc
        if run.fail(exc, cancelled=cancelled):
            _sweep(run, running)
            notify(rt, job_id, as_tasks=not cancelled)
        raise
    finally:
        ATTEMPT_DEADLINE.reset(scope)
    if not run.complete(key, result):
        return _superseded(Superseded(f"job {job_id} ended before its file was recorded"))
    notify(rt, job_id)
    return Completed(message=f"{result.rows:,} rows, {result.bytes:,} bytes")
