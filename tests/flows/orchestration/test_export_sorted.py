"""Sorted background exports: SQL's order, chunk tasks on sort positions, and a resume after
a killed run that gives the same bytes."""

from __future__ import annotations

import hashlib
import io
import json

import polars as pl
import psycopg
import pytest

from flows.orchestration import export_flow as module
from flows.orchestration.export_flow import export_flow
from tests.flows.conftest import flows_runtime
from tests.flows.datapath.filter_table import drop_items, make_items, sql_ids
from tests.flows.helpers import new_job, reference, stored, task_runs
from tests.flows.orchestration.test_resume_plans import crash_after

DESC_PRICE = [{"column": "price", "direction": "desc"}]
ORDER = "price DESC NULLS FIRST, id DESC"


@pytest.fixture(params=[1, 3], ids=["one-range", "three-ranges"])
def items_rt(request, flows_env, db_url, tmp_path, monkeypatch):
    """The flows' runtime on the items table, in chunks of 40 rows (of `param` ranges)."""
    make_items(db_url, tmp_path)
    env = {
        "EXPORTFLOW_DATASETS": str(tmp_path / "datasets.yaml"),
        "EXPORTFLOW_CHUNK_ROWS": "40",
        "EXPORTFLOW_FIRST_CHUNK_ROWS": "40",
        "EXPORTFLOW_CHUNK_RANGES": str(request.param),
    }
    monkeypatch.setattr(module.export_chunk, "retry_delay_seconds", [0])
    with flows_runtime(**env) as rt:
        yield rt
    drop_items(db_url)


def file_ids(data: bytes) -> list[int]:
    return pl.read_csv(io.BytesIO(data))["id"].to_list()


def chunk_names(flow_run_id) -> list[str]:
    return sorted(t.name for t in task_runs(flow_run_id) if t.name.startswith("chunk-"))


def test_a_sorted_background_export_is_sqls_order(items_rt, db_url):
    rt = items_rt
    job = new_job(rt, module="items", sort=DESC_PRICE)
    assert export_flow(str(job.id), return_state=True).is_completed()
    done = rt.jobs.get(job.id)
    data = stored(rt, done.file_key)
    assert file_ids(data) == sql_ids(db_url, order=ORDER)
    assert data == reference(rt, done)  # the CLI's engine writes the same bytes
    assert done.processed_rows == 400
    # Each chunk ends on a sort position: (price, id) as PostgreSQL prints them.
    ends = [json.loads(c["hi"]) for c in done.checkpoint["chunks"]]
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            f"SELECT price::text AS p, id::text AS i FROM fl_items ORDER BY {ORDER}"
        )
        want = [list(r) for r in rows.fetchall()]
    assert ends == want[39 :: 40 * rt.settings.chunk_ranges]


def test_a_killed_sorted_run_resumes_to_the_same_file(items_rt, db_url, monkeypatch):
    rt = items_rt
    filters = [
        {"any": [{"column": "price", "op": "gt", "value": 20}, {"column": "grp", "op": "is_null"}]}
    ]
    job_id = str(new_job(rt, module="items", sort=DESC_PRICE, filters=filters).id)
    with monkeypatch.context() as m:
        crash_after(m, 2)
        with pytest.raises(SystemExit):
            export_flow(job_id)
    stuck = rt.jobs.get(job_id)
    assert stuck.status == "processing" and len(stuck.checkpoint["chunks"]) == 2

    state = export_flow(job_id, return_state=True)
    assert state.is_completed()
    done = rt.jobs.get(job_id)
    data = stored(rt, done.file_key)
    assert data == reference(rt, done)
    assert hashlib.sha256(data).hexdigest() == done.sha256
    want = sql_ids(db_url, "price > 20 OR grp IS NULL", ORDER)
    assert file_ids(data) == want and len(want) > 120
    names = chunk_names(state.state_details.flow_run_id)
    assert names and "chunk-0" not in names and "chunk-1" not in names
