"""The many-machine shape on one machine, as `deployments/cluster.sh up` starts it: a Prefect
server on PostgreSQL, two workers on the `exports` pool, two API replicas, S3 storage.

The tests run in order against one cluster; the last one loses a worker for good.
"""

from __future__ import annotations

import hashlib
import time

import httpx
import psutil
import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Crashed

from tests.e2e.cluster import RATE_LIMIT, WORKERS, Cluster, start_cluster
from tests.e2e.conftest import settle_earlier_tests, wait_for
from tests.flows.helpers import reference

# Prefect's server on PostgreSQL needs pg_trgm, which the embedded server lacks.
pytestmark = [pytest.mark.cluster, pytest.mark.contrib]

EXPORTS = 10


@pytest.fixture(scope="module")
def cluster(db_url, s3_server, tmp_path_factory):
    """The script's cluster; afterwards, no process of it may be left running."""
    settle_earlier_tests(db_url)
    c = start_cluster(db_url, s3_server, tmp_path_factory.mktemp("cluster"))
    print(f"\ncluster up in {c.startup_seconds:.1f} s")
    try:
        with temporary_settings(updates={PREFECT_API_URL: c.prefect_api}):
            yield c
    finally:
        family = c.processes()
        code = c.stop()
        _, alive = psutil.wait_procs(family, timeout=15)
        for p in alive:
            p.kill()
        print(c.output())
        assert code == 0, c.output()
        left = [(p.pid, p.cmdline()) for p in alive + c.processes()]
        assert not left, f"left running after the cluster stopped: {left}"


def worker_of(run_id) -> str:
    """The worker that ran a flow run, as Prefect records it in the run's labels."""
    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id).labels["prefect.worker.name"]


def finished(c: Cluster, api: str, job_id: str, headers, timeout: float = 150) -> dict:
    """Poll one replica until the export has ended; its last answer."""
    return wait_for(
        f"export {job_id} to end",
        lambda: (
            (b := c.status(api, job_id, headers))["status"] not in ("pending", "processing") and b
        ),
        timeout,
        every=0.5,
    )


@pytest.fixture(scope="module")
def batch(cluster):
    """Ten background exports by ten users, sent to the two replicas in turn, all finished."""
    c = cluster
    jobs = []
    began = time.monotonic()
    for i in range(EXPORTS):
        headers = c.auth(f"user-{i}", "tags:read")
        r = httpx.post(
            f"{c.apis[i % 2]}/api/tags/export", json={"mode": "background"}, headers=headers
        )
        assert r.status_code == 202, r.text
        jobs.append((r.json()["jobId"], headers))
    # Polled from the other replica than the one that took the request.
    ends = [finished(c, c.apis[(i + 1) % 2], job_id, h) for i, (job_id, h) in enumerate(jobs)]
    print(f"\n{EXPORTS} background exports done in {time.monotonic() - began:.1f} s")
    return jobs, ends


def test_ten_background_exports_complete_on_both_workers(cluster, batch):
    jobs, ends = batch
    assert [e["status"] for e in ends] == ["completed"] * EXPORTS, ends
    ran_on = [worker_of(cluster.rt.jobs.get(job_id).flow_run_id) for job_id, _ in jobs]
    spread = {w: ran_on.count(w) for w in WORKERS}
    print(f"\nworkers: {spread}")
    assert set(ran_on) == set(WORKERS), ran_on
    for (job_id, headers), end in zip(jobs, ends, strict=True):
        data = cluster.download(cluster.apis[0], job_id, headers)
        assert end["processedRows"] == 500 and len(data) == end["fileBytes"]
        assert hashlib.sha256(data).hexdigest() == end["sha256"]


def test_a_status_reads_the_same_from_either_replica(cluster, batch):
    jobs, _ = batch
    for job_id, headers in jobs:
        first, second = (cluster.status(api, job_id, headers) for api in cluster.apis)
        assert first == second


def test_the_rate_limit_holds_across_replicas(cluster):
    headers = cluster.auth("limited", "tags:read")
    body = {"scope": "selected", "selectedIds": [1, 2]}
    codes = []
    for i in range(RATE_LIMIT + 2):
        r = httpx.post(f"{cluster.apis[i % 2]}/api/tags/export", json=body, headers=headers)
        codes.append(r.status_code)
        if r.status_code == 429:
            assert r.json()["error"]["code"] == "rate_limited" and int(r.headers["retry-after"]) > 0
    assert codes == [200] * RATE_LIMIT + [429, 429], codes


def test_a_lost_worker_s_export_resumes_on_the_other_to_the_same_file(cluster):
    rt, headers = cluster.rt, cluster.auth("survivor", "products:read")
    r = httpx.post(
        f"{cluster.apis[0]}/api/products/export", json={"mode": "background"}, headers=headers
    )
    assert r.status_code == 202, r.text
    job_id = r.json()["jobId"]
    job = wait_for(
        f"job {job_id} to have rows done",
        lambda: (j := rt.jobs.get(job_id)).processed_rows > 0 and j,
        timeout=90,
        every=0.05,
    )
    victim = worker_of(job.flow_run_id)
    survivor = next(w for w in WORKERS if w != victim)
    killed_at = time.monotonic()
    cluster.lose_host(victim)
    wait_for("the script to notice", lambda: f"{victim} (pid" in cluster.output(), 10)
    stuck = rt.jobs.get(job_id)
    assert stuck.status == "processing" and 0 < len(stuck.checkpoint["chunks"]) < 20, stuck
    # Mid-export as well, both replicas tell the same from the job row.
    first, second = (cluster.status(api, job_id, headers) for api in cluster.apis)
    assert first["status"] == second["status"] == "processing"
    assert first["processedRows"] == second["processedRows"] == stuck.processed_rows
    with get_client(sync_client=True) as client:
        # Nobody is left to say the run ended: it stays Running.
        assert client.read_flow_run(job.flow_run_id).state.is_running()
        # What the silent-run automation does once the run's heartbeats stop (90 s later;
        # tests/e2e/test_stack.py waits for it): from here the reconcile deployment's
        # trigger resumes the export, on the worker that is left.
        client.set_flow_run_state(job.flow_run_id, Crashed(message="its host was lost"), force=True)

    end = finished(cluster, cluster.apis[1], job_id, headers)
    took = time.monotonic() - killed_at
    assert end["status"] == "completed", end
    done = rt.jobs.get(job_id)
    assert done.attempt == 1 and worker_of(done.flow_run_id) == survivor
    expected = hashlib.sha256(reference(rt, done)).hexdigest()
    assert end["sha256"] == expected
    assert (
        hashlib.sha256(cluster.download(cluster.apis[1], job_id, headers)).hexdigest() == expected
    )
    print(
        f"\n{victim} lost after {len(stuck.checkpoint['chunks'])} of 20 chunks; "
        f"resumed on {survivor}, completed {took:.1f} s after the kill"
    )
