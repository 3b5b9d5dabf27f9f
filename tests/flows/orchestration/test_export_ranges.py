"""Chunk tasks of several key ranges: the file is the CLI's, byte for byte, and resumes so."""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pytest

from flows.datapath.source import Source, key_ranges
from flows.orchestration import export_flow as module
from flows.orchestration.export_flow import export_flow
from tests.flows.helpers import new_job, reference, stored, task_runs

# Ranges of 300 rows (chunk_rows in the flows' tests); the first chunk measures alone.
RANGES = 3
ROWS = [300, 900, 800]


@pytest.fixture
def ranges(rt, monkeypatch):
    monkeypatch.setattr(rt.settings, "chunk_ranges", RANGES)
    monkeypatch.setattr(module.export_chunk, "retry_delay_seconds", [0])


def chunk_names(flow_run_id) -> list[str]:
    return sorted(t.name for t in task_runs(flow_run_id) if t.name.startswith("chunk-"))


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_chunks_of_several_ranges_write_the_clis_bytes(rt, ranges, fmt):
    job = new_job(rt, format=fmt)
    state = export_flow(str(job.id), return_state=True)
    done = rt.jobs.get(job.id)
    assert done.status == "completed"
    assert [c["rows"] for c in done.checkpoint["chunks"]] == ROWS
    assert chunk_names(state.state_details.flow_run_id) == ["chunk-0", "chunk-1", "chunk-2"]
    data = stored(rt, done.file_key)
    assert data == reference(rt, done)  # the engine reads 300-row chunks: the same ranges
    assert hashlib.sha256(data).hexdigest() == done.sha256


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_a_run_killed_after_a_chunk_of_ranges_resumes_to_the_same_bytes(
    rt, ranges, monkeypatch, fmt
):
    job_id = str(new_job(rt, format=fmt).id)
    original = module.export_chunk.fn

    def dies(job_id, attempt, index, *bounds):
        if index == 2:
            raise SystemExit("worker killed")
        return original(job_id, attempt, index, *bounds)

    with monkeypatch.context() as m:
        m.setattr(module.export_chunk, "fn", dies)
        with pytest.raises(SystemExit):
            export_flow(job_id)
    stuck = rt.jobs.get(job_id)
    assert stuck.status == "processing"
    assert [c["rows"] for c in stuck.checkpoint["chunks"]] == ROWS[:2]
    state = export_flow(job_id, return_state=True)
    done = rt.jobs.get(job_id)
    assert chunk_names(state.state_details.flow_run_id) == ["chunk-2"]
    assert stored(rt, done.file_key) == reference(rt, done)


def test_key_ranges_split_a_bound_into_ranges_of_the_limit(rt):
    plan = rt.plan(new_job(rt))
    with Source(rt.url, plan) as src:
        lo, _ = src.next_bound(None, 100)
        hi, rows = src.next_bound(lo, 1000)
        whole = src.read_range(lo, hi)
        tables = list(key_ranges(src, lo, hi, rows, 300))
        assert [t.num_rows for t in tables] == [300, 300, 300, 100]
        assert pa.concat_tables(tables).equals(whole)
        # The last bound of a range never passes `hi`, even with fewer rows than probed.
        assert [t.num_rows for t in key_ranges(src, lo, hi, 2 * rows, 300)] == [300] * 3 + [100]
        assert [t.num_rows for t in key_ranges(src, lo, hi, rows, None)] == [1000]
