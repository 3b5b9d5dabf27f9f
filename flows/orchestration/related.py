"""A background export's related sheets: read after the module's rows, one chunk task
per keyset chunk of each relation, recorded in the same checkpoint (see checkpoint)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from operator import itemgetter

from prefect import task

from flows.datapath.deadline import Deadline
from flows.datapath.keyset import Bound, ChunkSizing, keyset_chunks
from flows.datapath.relations import RelationPlan, RelationSource, relation_plans
from flows.datapath.source import key_ranges
from flows.orchestration.checkpoint import Checkpoint
from flows.orchestration.export_flow import (
    ATTEMPT_DEADLINE,
    RETRY_DELAYS,
    Progress,
    _frames,
    _job_run,
    retry_if_transient,
)
from flows.orchestration.job_run import JobRun


def _relation(run: JobRun, section: str) -> RelationPlan:
    return next(rp for rp in relation_plans(run.plan) if rp.name == section)


@task(
    retries=3,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_if_transient,
    task_run_name="related-{section}-{index}",
    persist_result=False,
)
def export_related_chunk(
    job_id: str,
    attempt: int,
    section: str,
    index: int,
    lo: str | None,
    hi: str,
    rows: int,
    limit: int | None,
) -> tuple[int, int]:
    """As export_chunk, for chunk `index` of the related sheet `section`."""
    run = _job_run(job_id, attempt)
    run.check_loaded()
    rp = _relation(run, section)
    sizes: list[int] = []
    with RelationSource(run.rt.source_url, rp, ATTEMPT_DEADLINE.get()) as src:
        tables = key_ranges(src, lo, hi, rows, limit)
        frames = _frames(run, tables, sizes, rp)
        stored = run.files.write(run.rt.settings, run.plan, index, frames, section)
    return stored, sizes[0] if sizes else 0


def related_chunks(
    run: JobRun, checkpoint: Checkpoint, progress: Progress, limit: Deadline, running: deque
) -> Iterator[dict]:
    """Every related sheet's chunks after the checkpoint, sheet after sheet, each recorded
    and then handed on for the file, in order."""
    settings = run.rt.settings
    for rp in relation_plans(run.plan):
        name = rp.name
        sizing = ChunkSizing.from_settings(
            settings, checkpoint.limits.get(name), settings.chunk_ranges
        )

        def submit(bound: Bound, name=name, sizing=sizing):
            args = (name, bound.index, bound.lo, bound.hi, bound.rows, sizing.limit)
            future = export_related_chunk.submit(run.job_id, run.attempt, *args)
            running.append(future)
            return future

        with RelationSource(run.rt.source_url, rp, limit) as probe:
            chunks = keyset_chunks(
                probe, submit, sizing, itemgetter(1), checkpoint.last_key_of(name),
                checkpoint.next_index_of(name), settings.read_connections, limit,
            )  # fmt: skip
            for bound, (rows, _) in chunks:
                checkpoint.limits[name] = sizing.limit
                checkpoint.add(bound.index, bound.lo, bound.hi, rows, name)
                progress(checkpoint)
                yield checkpoint.chunks[-1]
