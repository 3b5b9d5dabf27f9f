"""GET /metrics as Prometheus reads it: the export figures come from export_jobs and move
with real exports through the API; 429s are counted by the process that answered them.

The session's database is shared with other tests, so each test compares a scrape before
and after what it does."""

from __future__ import annotations

import socket
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from psycopg.conninfo import make_conninfo

from flows.control.jobs import JobStore
from flows.orchestration.runtime import Runtime
from tests.api.conftest import user_id

PERMS = ("products:read",)
Samples = dict[tuple[str, frozenset], float]


@pytest.fixture
def api_settings(api_settings):
    """Up to 10 rows direct; one export per user and hour, so the second is refused."""
    return api_settings.model_copy(
        update={"direct_max_rows": 10, "stream_max_rows": 100, "rate_limit_per_hour": 1}
    )


@pytest.fixture
def headers(token):
    return {"Authorization": f"Bearer {token(user_id(), *PERMS)}"}


def scrape(client) -> Samples:
    """Every sample of GET /metrics, parsed by Prometheus's own parser."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 when the series does not exist (yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_a_direct_export_and_a_refused_one_move_the_metrics(client, headers):
    before = scrape(client)
    body = {"filters": [{"column": "id", "op": "lte", "value": 5}]}
    exported = client.post("/api/products/export", json=body, headers=headers)
    refused = client.post("/api/products/export", json=body, headers=headers)
    assert exported.status_code == 200 and refused.status_code == 429
    after = scrape(client)

    direct = {"module": "products", "format": "csv", "strategy": "direct"}
    assert delta(before, after, "exportflow_exports_total", **direct, status="completed") == 1
    assert delta(before, after, "exportflow_export_bytes_total", **direct) == len(exported.content)
    histogram = {"strategy": "direct", "format": "csv"}
    rows = "exportflow_export_rows"
    assert delta(before, after, f"{rows}_count", **histogram) == 1
    assert delta(before, after, f"{rows}_sum", **histogram) == 5
    assert delta(before, after, f"{rows}_bucket", **histogram, le="10.0") == 1
    assert delta(before, after, f"{rows}_bucket", **histogram, le="+Inf") == 1
    seconds = "exportflow_export_duration_seconds"
    assert delta(before, after, f"{seconds}_count", **histogram) == 1
    assert delta(before, after, f"{seconds}_bucket", **histogram, le="+Inf") == 1
    assert delta(before, after, f"{seconds}_bucket", **histogram, le="60.0") == 1
    assert 0 <= delta(before, after, f"{seconds}_sum", **histogram) < 60
    refusals = "exportflow_http_429_responses_total"
    assert delta(before, after, refusals, code="rate_limited") == 1
    assert delta(before, after, "exportflow_exports_finished_last_hour") == 1
    assert delta(before, after, "exportflow_exports_failed_last_hour") == 0
    assert value(after, "exportflow_job_metrics_up") == 1


def test_a_running_export_is_in_flight_and_its_failure_counts_in_the_last_hour(client, rt):
    jobs = rt.jobs
    labels = {"module": "tags", "format": "xlsx", "strategy": "background"}
    before = scrape(client)
    job = jobs.create(user_id(), "tags", "xlsx", "background", {"module": "tags"})
    jobs.claim(job.id, job.attempt, None)
    jobs.progress(job.id, job.attempt, 123, {"chunks": [0]})
    running = scrape(client)
    assert delta(before, running, "exportflow_rows_in_flight", **labels) == 123
    assert delta(before, running, "exportflow_exports_active", **labels, status="processing") == 1

    jobs.finish(job.id, "failed", "source_error", "the database refused a query", job.attempt)
    after = scrape(client)
    assert delta(before, after, "exportflow_rows_in_flight", **labels) == 0
    assert delta(before, after, "exportflow_exports_active", **labels, status="processing") == 0
    assert delta(before, after, "exportflow_exports_total", **labels, status="failed") == 1
    assert delta(before, after, "exportflow_exports_failed_last_hour") == 1
    assert delta(before, after, "exportflow_exports_finished_last_hour") == 1
    failed = value(after, "exportflow_exports_failed_last_hour")
    finished = value(after, "exportflow_exports_finished_last_hour")
    assert value(after, "exportflow_failure_rate_last_hour") == pytest.approx(failed / finished)
    assert value(after, "exportflow_failure_rate_last_hour") > value(
        before, "exportflow_failure_rate_last_hour"
    )


def test_an_expired_export_still_counts_as_completed(client, rt):
    jobs = rt.jobs
    labels = {"module": "tags", "format": "csv", "strategy": "background"}
    job = jobs.create(user_id(), "tags", "csv", "background", {"module": "tags"})
    jobs.claim(job.id, job.attempt, None)
    past = datetime.now(UTC) - timedelta(seconds=1)
    jobs.complete(job.id, job.attempt, 7, (f"exports/{job.id}/tags.csv", 70, "ab" * 32), past)
    completed = scrape(client)
    assert jobs.mark_expired(job.id)  # what the cleanup flow does once the file is deleted
    expired = scrape(client)
    # A counter must not drop: the expired export is still one completed export.
    for name in ("exportflow_exports_total", "exportflow_export_bytes_total"):
        extra = {"status": "completed"} if name == "exportflow_exports_total" else {}
        assert delta(completed, expired, name, **labels, **extra) == 0
    assert value(expired, "exportflow_exports_total", **labels, status="completed") >= 1


def test_the_metrics_answer_while_the_database_is_down(create_app, api_settings, rt, closed_url):
    down = Runtime(rt.settings, closed_url, rt.registry, rt.storage, JobStore(closed_url))
    with TestClient(create_app(api_settings, rt=down)) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert families["exportflow_job_metrics_up"].samples[0].value == 0
    assert "exportflow_exports" not in families  # no figure is better than a wrong one
    assert "exportflow_http_429_responses" in families  # this process's own count stays


@pytest.fixture
def closed_url(server_url: str) -> str:
    """A database URL on a loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return make_conninfo(server_url, host="127.0.0.1", port=port, dbname=f"x{uuid.uuid4().hex}")
