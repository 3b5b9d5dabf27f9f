"""Faults no retry can fix end the export at once, with a code and nothing partial: the
source table altered under the run, and a full disk."""

from __future__ import annotations

import psycopg
import pytest

from flows.orchestration.checkpoint import job_file_prefix, job_temp_prefix
from flows.orchestration.export_flow import export_flow
from flows.tools.seed import seed
from tests.faults.conftest import ROWS
from tests.flows.conftest import flows_runtime
from tests.flows.control.test_storage_full import small_fs  # noqa: F401 (a fixture)
from tests.flows.helpers import (
    RUN_TIMEOUT,
    all_chunks_waiting,
    chunk_runs,
    in_background,
    lock_when,
    new_job,
    started,
)

pytestmark = pytest.mark.faults


def nothing_left(rt, job) -> bool:
    job_id = str(job.id)
    return (
        rt.storage.list(job_temp_prefix(job_id)) == rt.storage.list(job_file_prefix(job_id)) == []
    )


def test_a_column_dropped_mid_export_fails_at_once_without_retries(own_rt, own_db):
    rt = own_rt
    job = new_job(rt)
    run = in_background(export_flow, str(job.id), return_state=True)
    started(rt, job)
    try:
        lock = lock_when(rt.url, all_chunks_waiting)
        try:
            lock.conn.execute("ALTER TABLE products DROP COLUMN weight_kg")
            lock.commit()
        finally:
            lock.release()
        state = run.result(RUN_TIMEOUT)
    finally:
        seed(own_db, rows=ROWS, tag_rows=100)  # the table as the other tests expect it
    failed = rt.jobs.get(job.id)
    assert state.is_failed()
    assert (failed.status, failed.error_code) == ("failed", "source_error")
    assert failed.error == "a column or table used by this export no longer exists"
    runs = chunk_runs(state.state_details.flow_run_id)
    assert runs and {t.run_count for t in runs.values()} == {1}, "a retry was burnt"
    assert failed.file_key is None and nothing_left(rt, job)


@pytest.mark.root
def test_a_full_disk_fails_with_storage_full_and_nothing_partial(own_db, harness, small_fs):  # noqa: F811
    env = {
        "EXPORTFLOW_DATABASE_URL": own_db,
        "EXPORTFLOW_DATA_DIR": str(small_fs),
        "EXPORTFLOW_STORAGE_URL": small_fs.as_uri(),
        "EXPORTFLOW_CHUNK_ROWS": "200",
        "EXPORTFLOW_CHUNK_RANGES": "1",
    }
    # Another tenant's 300 KB: this export's ~500 KB of parts plus its ~500 KB file no
    # longer fit.
    (small_fs / "other-data.bin").write_bytes(b"x" * 300_000)
    with flows_runtime(**env) as rt:
        job = new_job(rt)
        state = export_flow(str(job.id), return_state=True)
        failed = rt.jobs.get(job.id)
        assert state.is_failed()
        assert (failed.status, failed.error_code) == ("failed", "storage_full")
        assert failed.file_key is None and nothing_left(rt, job)
    with psycopg.connect(own_db) as conn:
        assert conn.execute("SELECT count(*) FROM products").fetchone() == (ROWS,)
