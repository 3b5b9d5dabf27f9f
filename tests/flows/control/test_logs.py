"""Structured logs: the JSON and text lines, the context they carry, the console set-up, and
the one record a finished export leaves, from real job-store updates."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from flows.control.jobs import JobStore
from flows.control.logs import (
    JsonFormatter,
    TextFormatter,
    bind,
    close_context,
    configure_logging,
    open_context,
)


@pytest.fixture
def jobs(db_url) -> JobStore:
    return JobStore(db_url)


def emit(formatter: logging.Formatter, *args, **kwargs) -> str:
    """What a handler with `formatter` writes for one record of a fresh logger."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"test.logs.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.warning(*args, **kwargs)
    return out.getvalue()


def test_a_json_line_has_the_record_its_context_and_its_data():
    token = open_context(requestId="req-1", userId="ann")
    try:
        bind(jobId="job-9", module=None)  # None adds nothing
        try:
            raise ValueError("bad\nvalue")
        except ValueError:
            text = emit(
                JsonFormatter(),
                "two\nlines %s",
                "ü",
                exc_info=True,
                extra={"data": {"userId": "bob", "rowCount": 3}},
            )
    finally:
        close_context(token)
    assert text.count("\n") == 1  # one object per line, a traceback included
    line = json.loads(text)
    assert line["level"] == "WARNING" and line["message"] == "two\nlines ü"
    assert (line["requestId"], line["jobId"], line["rowCount"]) == ("req-1", "job-9", 3)
    assert line["userId"] == "bob"  # the record's own data wins over the context
    assert "module" not in line
    assert "ValueError: bad\nvalue" in line["exception"]
    assert datetime.fromisoformat(line["time"]).tzinfo is not None


def test_outside_a_context_a_line_has_only_the_record():
    line = json.loads(emit(JsonFormatter(), "plain"))
    assert set(line) == {"time", "level", "logger", "message"}


def test_a_text_line_reads_as_text_with_key_value_pairs():
    token = open_context(requestId="req-2")
    try:
        text = emit(TextFormatter(), "hello", extra={"data": {"status": 200}})
    finally:
        close_context(token)
    pattern = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING test\.logs\.\w+: hello"
    assert re.fullmatch(pattern + r" requestId=req-2 status=200\n", text)


def test_configure_logging_prints_json_on_stderr_and_undoes_itself(capsys):
    noisy = logging.getLogger("test.logs.noisy")
    own = logging.getLogger("test.logs.own")
    own.addHandler(logging.NullHandler())
    own.propagate = False
    own.setLevel(logging.WARNING)  # as Prefect leaves uvicorn's logger: the root decides now
    root_level = logging.getLogger().level
    restore = configure_logging("json", "info", adopt=["test.logs.own"], quiet=["test.logs.noisy"])
    try:
        logging.getLogger("test.logs.app").info("kept")
        logging.getLogger("test.logs.app").debug("below the level")
        own.info("adopted")
        noisy.info("quieted")
        noisy.warning("still warned")
    finally:
        restore()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["message"] for line in lines] == ["kept", "adopted", "still warned"]
    assert (own.propagate, len(own.handlers), own.level) == (False, 1, logging.WARNING)
    assert noisy.level == logging.NOTSET
    assert logging.getLogger().level == root_level
    logging.getLogger("test.logs.app").warning("after restore")
    assert not any(line.startswith("{") for line in capsys.readouterr().err.splitlines())


def export_records(caplog, job_id) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "data", {}).get("jobId") == str(job_id)]


def test_a_completed_export_leaves_one_record_from_its_row(jobs, caplog):
    caplog.set_level(logging.INFO, logger="exportflow.exports")
    job = jobs.create("ann", "products", "xlsx", "background", {"module": "products"})
    jobs.claim(job.id, job.attempt, None)
    file = (f"exports/{job.id}/products.xlsx", 4096, "ab" * 32)
    done = jobs.complete(job.id, job.attempt, 1234, file, datetime.now(UTC) + timedelta(hours=1))
    jobs.complete(job.id, job.attempt, 1234, file, datetime.now(UTC))  # ended: no second record
    (record,) = export_records(caplog, job.id)
    assert record.name == "exportflow.exports" and record.levelno == logging.INFO
    line = json.loads(JsonFormatter().format(record))
    expected_ms = round((done.finished_at - done.started_at).total_seconds() * 1000)
    assert {k: line[k] for k in record.data} == {
        "jobId": str(job.id), "userId": "ann", "module": "products", "format": "xlsx",
        "strategy": "background", "status": "completed", "rowCount": 1234,
        "durationMs": expected_ms, "bytes": 4096, "errorCode": None,
    }  # fmt: skip
    assert (
        line["message"] == f"export {job.id} completed: 1234 rows, 4096 bytes in {expected_ms} ms"
    )


def test_a_failed_export_is_a_warning_with_its_code_and_a_superseded_run_logs_nothing(jobs, caplog):
    caplog.set_level(logging.INFO, logger="exportflow.exports")
    job = jobs.create("bob", "tags", "csv", "direct", {"module": "tags"})
    jobs.claim(job.id, job.attempt, None)
    jobs.progress(job.id, job.attempt, 40, {"chunks": [0]})
    assert jobs.finish(job.id, "failed", "timeout", "too slow", attempt=job.attempt + 1) is None
    assert export_records(caplog, job.id) == []
    ended = jobs.finish(job.id, "failed", "timeout", "too slow", attempt=job.attempt)
    (record,) = export_records(caplog, job.id)
    assert record.levelno == logging.WARNING
    expected_ms = round((ended.finished_at - ended.started_at).total_seconds() * 1000)
    assert record.data == {
        "jobId": str(job.id), "userId": "bob", "module": "tags", "format": "csv",
        "strategy": "direct", "status": "failed", "rowCount": 40, "durationMs": expected_ms,
        "bytes": None, "errorCode": "timeout",
    }  # fmt: skip


def test_a_job_cancelled_before_it_started_has_no_duration(jobs, caplog):
    caplog.set_level(logging.INFO, logger="exportflow.exports")
    job = jobs.create("cy", "tags", "csv", "background", {"module": "tags"})
    jobs.finish(job.id, "cancelled", "cancelled", "cancelled by its owner")
    (record,) = export_records(caplog, job.id)
    assert record.levelno == logging.INFO
    assert (record.data["status"], record.data["durationMs"]) == ("cancelled", None)
