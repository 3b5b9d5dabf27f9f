"""Chunk tasks of several key ranges: the file is the CLI's, byte for byte, and resumes so."""

from __future__ import annotations

import csv
import hashlib
import io

import psycopg
import pyarrow as pa
import pytest

from flows.datapath.source import Source, key_ranges
from flows.orchestration import export_flow as module
from flows.orchestration.export_flow import export_flow
from tests.flows.conftest import flows_runtime
from tests.flows.datapath.conftest import SHOP_SQL, SHOP_YAML
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


@pytest.fixture
def shop_rt(flows_env, db_url, tmp_path):
    """The flows' runtime on tables keyed as real schemas key them: 7-row ranges, 3 a task."""
    with psycopg.connect(db_url) as conn:
        conn.execute(SHOP_SQL)
    datasets = tmp_path / "datasets.yaml"
    datasets.write_text(SHOP_YAML)
    try:
        ranges = {"EXPORTFLOW_CHUNK_RANGES": "3", "EXPORTFLOW_CHUNK_ROWS": "7"}
        with flows_runtime(EXPORTFLOW_DATASETS=str(datasets), **ranges) as rt:
            yield rt
    finally:
        with psycopg.connect(db_url) as conn:
            conn.execute('DROP SCHEMA "Shop" CASCADE')


@pytest.mark.parametrize(
    ("module", "key"),
    [("orders", '"Code"'), ("words", "word"), ("sessions", "id")],
    ids=["char(8) key", "mixed-case unicode text key", "uuid key"],
)
def test_ranges_over_char_text_and_uuid_keys_export_every_row_once(shop_rt, db_url, module, key):
    job = new_job(shop_rt, module=module)
    state = export_flow(str(job.id), return_state=True)
    done = shop_rt.jobs.get(job.id)
    assert done.status == "completed"
    assert len(chunk_names(state.state_details.flow_run_id)) > 1
    data = stored(shop_rt, done.file_key)
    assert data == reference(shop_rt, done)
    table = shop_rt.registry.get(module).table
    with psycopg.connect(db_url) as conn:
        # Read as stored (a char(8) keeps its padding, which ::text would drop).
        keys = [str(r[0]) for r in conn.execute(f"SELECT {key} FROM {table} ORDER BY {key}")]
    exported = [row[0] for row in csv.reader(io.StringIO(data.decode(), newline=""))][1:]
    # Formula neutralising may prefix a key with a quote; no key here starts a formula.
    assert exported == keys and len(set(exported)) == len(keys)
