"""export_flow(job_id): one background export as a Prefect flow run, resumable chunk by chunk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from operator import itemgetter

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.client.orchestration import get_client
from prefect.runtime import flow_run
from prefect.states import Completed
from prefect.task_runners import ThreadPoolTaskRunner

from flows.control.errors import ExportflowError, JobNotFound, is_transient
from flows.datapath.engine import ExportResult
from flows.datapath.keyset import Bound, ChunkSizing, keyset_chunks
from flows.datapath.source import Source
from flows.datapath.transform import Transform
from flows.datapath.writers import file_extension
from flows.orchestration.checkpoint import (
    Checkpoint,
    assemble,
    final_key,
    parts_prefix,
    plan_fingerprint,
    write_part,
)
from flows.orchestration.runtime import runtime

RETRY_DELAYS = [1, 5, 15]


def retry_if_transient(task, task_run, state) -> bool:
    """Retry lost connections and storage hiccups; fail at once on anything else."""
    return is_transient(state.result(raise_on_failure=False))


def _run_name() -> str:
    job_id = flow_run.parameters["job_id"]
    job = runtime().jobs.get(job_id)
    return f"export-{job.module if job else 'unknown'}-{job_id}"


@task(
    retries=1,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_if_transient,
    task_run_name="count-{job_id}",
    persist_result=False,
)
def count_rows(job_id: str) -> int:
    """How many rows the job exports."""
    rt = runtime()
    with Source(rt.url, rt.plan(rt.jobs.get(job_id))) as src:
        return src.count()


@task(
    retries=3,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_if_transient,
    task_run_name="chunk-{index}",
    persist_result=False,
)
def export_chunk(job_id: str, index: int, lo: str | None, hi: str) -> tuple[int, int]:
    """Read rows lo < key <= hi, transform them, store them as chunk file `index`;
    returns the rows and their Arrow bytes (which size the chunks after the first)."""
    rt = runtime()
    plan = rt.plan(rt.jobs.get(job_id))
    with Source(rt.url, plan) as src:
        table = src.read_range(lo, hi)
    rows = write_part(rt.storage, rt.settings, plan, job_id, index, Transform(plan)(table))
    return rows, table.nbytes


@task(
    retries=2,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_if_transient,
    task_run_name="assemble-{job_id}",
    persist_result=False,
)
def assemble_file(job_id: str, parts: list[dict]) -> tuple[str, ExportResult]:
    """Write the parts, in order, into the final file."""
    rt = runtime()
    job = rt.jobs.get(job_id)
    plan = rt.plan(job)
    key = final_key(job_id, job.module, file_extension(plan.request))
    return key, assemble(rt.storage, rt.settings, plan, job_id, parts, key)


class Progress:
    """Rows done, to the job row and the run's progress artifact, in one place."""

    def __init__(self, job_id: str, total: int) -> None:
        self.job_id, self.total = job_id, total
        self.artifact = create_progress_artifact(
            progress=0.0, key=f"export-progress-{job_id}", description=f"Export {job_id}"
        )

    def __call__(self, checkpoint: Checkpoint) -> None:
        done = checkpoint.rows
        runtime().jobs.progress(self.job_id, done, checkpoint.to_dict())
        pct = 100.0 * done / self.total if self.total else 100.0
        update_progress_artifact(self.artifact, min(pct, 100.0), f"{done:,} of {self.total:,} rows")


def _chunks(job_id: str, checkpoint: Checkpoint, progress: Progress) -> None:
    """Every chunk after the checkpoint, each a task, read ahead and recorded in key order."""
    rt = runtime()
    plan = rt.plan(rt.jobs.get(job_id))
    sizing = ChunkSizing.from_settings(rt.settings, checkpoint.limit)

    def submit(bound: Bound):
        return export_chunk.submit(job_id, bound.index, bound.lo, bound.hi)

    with Source(rt.url, plan) as probe:
        chunks = keyset_chunks(
            probe, submit, sizing, itemgetter(1), checkpoint.last_key,
            checkpoint.next_index, rt.settings.read_connections,
        )  # fmt: skip
        for bound, (rows, _) in chunks:
            checkpoint.limit = sizing.limit
            checkpoint.add(bound.index, bound.lo, bound.hi, rows)
            progress(checkpoint)


def _end(job_id: str, status: str, code: str, message: str) -> None:
    rt = runtime()
    rt.jobs.finish(job_id, status, code, message)
    rt.storage.delete_prefix(parts_prefix(job_id))


def _being_cancelled() -> bool:
    """Whether this run is being cancelled (the server then aborts tasks that try to start)."""
    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(flow_run.id).state
    except Exception:
        return False
    return state is not None and (state.is_cancelling() or state.is_cancelled())


def _fail(job_id: str, code: str, message: str) -> None:
    """End the job as failed; as cancelled when the error comes from a cancellation."""
    if _being_cancelled():
        _end(job_id, "cancelled", "cancelled", "cancelled by request")
    else:
        _end(job_id, "failed", code, message)


def stopped_by_shutdown(state) -> bool:
    """A run cancelled because its runner or worker shut down, not because a user asked."""
    return "shutting down" in (state.message or "").lower()


def _on_cancellation(flow, flow_run, state) -> None:
    if stopped_by_shutdown(state):
        return  # the job stays active with its checkpoint; the reconciler resubmits it
    _end(flow_run.parameters["job_id"], "cancelled", "cancelled", "cancelled by request")


@flow(
    name="export",
    flow_run_name=_run_name,
    persist_result=False,
    task_runner=ThreadPoolTaskRunner(max_workers=2),
    on_cancellation=[_on_cancellation],
)
def export_flow(job_id: str):
    """Export one job's rows to its file; resumes from the job's checkpoint."""
    rt = runtime()
    job = rt.jobs.get(job_id)
    if job is None:
        raise JobNotFound(f"no export job {job_id}")
    if job.status not in ("pending", "processing"):
        return Completed(message=f"job already {job.status}")
    log = get_run_logger()
    try:
        total = count_rows(job_id)
        rt.jobs.start(job_id, total, flow_run.id)
        checkpoint = Checkpoint.load(job.checkpoint, plan_fingerprint(rt.plan(job), rt.settings))
        checkpoint.keep_existing(rt.storage, job_id)
        if checkpoint.parts:
            log.info("resuming after key %s (%s rows stored)", checkpoint.last_key, checkpoint.rows)
        progress = Progress(job_id, total)
        _chunks(job_id, checkpoint, progress)
        key, result = assemble_file(job_id, checkpoint.parts)
    except ExportflowError as exc:
        _fail(job_id, exc.code, exc.message)
        raise
    except Exception as exc:
        _fail(job_id, "internal", f"{type(exc).__name__}: {exc}")
        raise
    expires = datetime.now(UTC) + timedelta(seconds=rt.settings.link_expiry_seconds)
    rt.jobs.complete(job_id, result.rows, key, result.bytes, result.sha256, expires)
    rt.storage.delete_prefix(parts_prefix(job_id))
    return Completed(message=f"{result.rows:,} rows, {result.bytes:,} bytes")
