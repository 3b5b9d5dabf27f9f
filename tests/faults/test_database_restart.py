"""PostgreSQL restarted under a running export: it still ends with the whole file."""

from __future__ import annotations

import hashlib

import pytest

from tests.faults.conftest import ROWS, start_export
from tests.flows.helpers import RUN_TIMEOUT, stored

pytestmark = pytest.mark.faults


def test_postgresql_restarted_mid_export_completes_identically(own_postgres, own_rt):
    rt = own_rt
    job, expected, run = start_export(rt)
    down = own_postgres.restart()
    state = run.result(RUN_TIMEOUT)
    done = rt.jobs.get(job.id)
    assert state.is_completed(), (state.message, done.error_code, done.error, down)
    assert (done.status, done.processed_rows) == ("completed", ROWS)
    data = stored(rt, done.file_key)
    assert data == expected
    assert hashlib.sha256(data).hexdigest() == done.sha256
