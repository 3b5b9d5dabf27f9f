"""An export's deadline: reads held up in PostgreSQL end when it comes, it is checked between
chunks, and an export well within it writes the same file as one with none."""

from __future__ import annotations

import io
import time

import pytest

from flows.control.errors import SourceTimeout
from flows.datapath.deadline import Deadline
from flows.datapath.engine import export
from flows.datapath.request import ExportRequest, plan_export
from tests.flows.helpers import TableLock

MESSAGE = "the export took longer than its limit"


@pytest.fixture
def plan(registry, settings):
    return plan_export(ExportRequest(module="products"), registry, settings)


def test_reads_waiting_on_a_lock_end_at_the_deadline(settings, plan):
    # The statement timeout (300 s) would keep every read, the count too, waiting on the lock.
    assert plan.statement_timeout_seconds == 300
    lock = TableLock(settings.database_url)
    try:
        limit = Deadline.after(1, MESSAGE)
        start = time.monotonic()
        with pytest.raises(SourceTimeout) as info:
            export(settings.database_url, plan, io.BytesIO(), settings, deadline=limit)
        elapsed = time.monotonic() - start
        # Nothing of the export is left waiting on the lock once it has failed.
        assert lock.waiting() == []
    finally:
        lock.release()
    assert (info.value.code, info.value.message) == ("timeout", MESSAGE)
    assert 1 <= elapsed < 6


def test_the_deadline_is_checked_between_chunks(settings, plan):
    limit = Deadline.after(2, MESSAGE)
    seen = []

    def slow_writer(done: int, total: int) -> None:
        # Writing the first chunk takes the export past its deadline.
        seen.append(done)
        time.sleep(max(limit.remaining(), 0) + 0.05)

    with pytest.raises(SourceTimeout) as info:
        export(settings.database_url, plan, io.BytesIO(), settings, slow_writer, limit)
    assert info.value.message == MESSAGE
    # The first of seven 300-row chunks was written; no chunk after it.
    assert seen == [300]


def test_an_export_within_its_deadline_is_the_same_file(settings, plan):
    # Shorter than the statement timeout: every read runs with its own bound.
    within = io.BytesIO()
    result = export(
        settings.database_url, plan, within, settings, None, Deadline.after(60, MESSAGE)
    )
    plain = io.BytesIO()
    export(settings.database_url, plan, plain, settings)
    assert result.rows == 2000
    assert within.getvalue() == plain.getvalue()
