"""`exportflow submit`, `jobs` and `download` as a script runs them: a real API on loopback,
the Prefect harness, the flow run executed as a worker would, real files compared byte for byte."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import LoopbackServer
from tests.e2e.conftest import free_port
from tests.flows.tools.cli_run import checkout_env, cli_command, exportflow
from tests.flows.tools.conftest import run_as_worker, submitted

OPTIONS = ["--columns", "id,sku,price,created_at", "--filter", "id:lte:900"]
FORMATS = {"csv": ["--bom", "--timezone", "Europe/Berlin"], "xlsx": ["--format", "xlsx"]}


def start(env: dict, *args: str, cwd: Path) -> subprocess.Popen:
    """`exportflow ARGS` running in the background, its output captured."""
    return subprocess.Popen(
        cli_command(*args),
        env=checkout_env(env),
        cwd=cwd,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_submit_wait_writes_what_export_writes_and_jobs_lists_it(
    api, as_user, cli_env, user, tmp_path: Path, fmt
):
    options = [*OPTIONS, *FORMATS[fmt]]
    out = tmp_path / f"submitted.{fmt}"
    proc = start(as_user, "submit", "products", *options, "--wait", "-o", str(out), cwd=tmp_path)
    job = submitted(api, user)
    run_as_worker(job)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert stdout == f"{job.id}\n"
    assert "900/900 rows 100.0%" in stderr
    assert f"wrote {out.stat().st_size:,} bytes to {out}" in stderr

    reference = tmp_path / f"reference.{fmt}"
    local = exportflow(cli_env, "export", "products", *options, "-o", str(reference))
    assert local.returncode == 0, local.stderr
    assert out.read_bytes() == reference.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []

    listed = exportflow(as_user, "jobs")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split() == [
        "id",
        "module",
        "format",
        "status",
        "rows",
        "size",
        "created",
        "(UTC)",
    ]
    assert row.split()[:5] == [str(job.id), "products", fmt, "completed", "900"]

    again = tmp_path / "again"
    fetched = exportflow(as_user, "download", str(job.id), "-o", str(again))
    assert fetched.returncode == 0, fetched.stderr
    assert again.read_bytes() == reference.read_bytes()


def test_submit_json_maps_every_option_and_returns_at_once(api, as_user, user, tmp_path):
    run = exportflow(
        as_user,
        *["submit", "products", "--columns", "id,sku", "--ids", "3,1", "--filter", "price:gte:1"],
        *["--from", "2024-01-01", "--to", "2024-12-31", "--delimiter", ";", "--no-header"],
        *["--gzip", "--timezone", "Asia/Tokyo", "--json"],
    )
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    assert (answer["status"], answer["pollUrl"]) == (
        "pending",
        f"{api.url}/api/exports/{answer['jobId']}",
    )
    keyed = ["submit", "tags", "--idempotency-key", "nightly"]
    first, second = exportflow(as_user, *keyed), exportflow(as_user, *keyed)
    assert first.returncode == second.returncode == 0, first.stderr
    assert first.stdout == second.stdout != f"{answer['jobId']}\n"
    job = api.rt.jobs.get(answer["jobId"])
    assert (job.user_id, job.strategy, job.module) == (user, "background", "products")
    assert job.options == {
        **job.options,
        "columns": ["id", "sku"],
        "ids": ["3", "1"],
        "from": "2024-01-01",
        "to": "2024-12-31",
        "filters": [{"column": "price", "op": "gte", "value": "1"}],
        "timezone": "Asia/Tokyo",
        "delimiter": ";",
        "header": False,
        "gzip": True,
        "bom": False,
    }


def test_waiting_rides_out_an_api_restart(api, as_user, cli_env, user, tmp_path):
    out = tmp_path / "tags.csv"
    proc = start(as_user, "submit", "tags", "--wait", "-o", str(out), cwd=tmp_path)
    job = submitted(api, user)
    api.server.__exit__(None, None, None)
    time.sleep(3)  # the client polls into the outage at least once
    with LoopbackServer(api.app, api.server.port):
        run_as_worker(job)
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    reference = tmp_path / "reference.csv"
    assert exportflow(cli_env, "export", "tags", "-o", str(reference)).returncode == 0
    assert out.read_bytes() == reference.read_bytes()


def test_ctrl_c_while_waiting_leaves_the_export_running(api, as_user, user, tmp_path):
    proc = start(
        as_user, "submit", "products", "--wait", "-o", str(tmp_path / "p.csv"), cwd=tmp_path
    )
    job = submitted(api, user)
    assert proc.stdout.readline() == f"{job.id}\n"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert f"export {job.id} keeps running on the server" in stderr
    assert f"exportflow download {job.id} -o PATH" in stderr
    assert api.rt.jobs.get(job.id).status == "pending"
    assert list(tmp_path.iterdir()) == []


def test_a_cancelled_export_ends_the_wait_with_its_code(api, as_user, user, tmp_path):
    proc = start(as_user, "submit", "products", "--wait", cwd=tmp_path)
    job = submitted(api, user)
    auth = {"Authorization": f"Bearer {api.token(user)}"}
    assert httpx.delete(f"{api.url}/api/exports/{job.id}", headers=auth).status_code == 200
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert stderr.splitlines()[-1] == (
        f"error [cancelled]: export {job.id} cancelled: cancelled by request"
    )
    assert list(tmp_path.iterdir()) == []


def test_unknown_module_is_the_servers_code_and_starts_nothing(api, as_user, user):
    run = exportflow(as_user, "submit", "nope")
    assert run.returncode == 2
    assert run.stderr.startswith("error [unknown_module]: ") and "nope" in run.stderr
    assert api.rt.jobs.list_owned(user, 10) == []


def test_a_refused_column_is_the_servers_code(api, as_user, user):
    run = exportflow(as_user, "submit", "products", "--columns", "id,cost_price")
    assert run.returncode == 2
    assert run.stderr.startswith("error [column_not_allowed]: ")
    assert api.rt.jobs.list_owned(user, 10) == []


def test_bad_or_missing_token_says_how_to_get_one(api, client_env):
    env = {**client_env, "EXPORTFLOW_API_URL": api.url}
    bad = exportflow({**env, "EXPORTFLOW_TOKEN": "not-a-token"}, "jobs")
    assert bad.returncode == 2
    assert bad.stderr.startswith("error [invalid_token]: the API refused the token (")
    assert "exportflow token --user NAME --perm MODULE:read" in bad.stderr
    assert "EXPORTFLOW_TOKEN" in bad.stderr
    missing = exportflow(env, "submit", "products")
    assert missing.returncode == 2
    assert missing.stderr.startswith("error [invalid_token]: no token given; mint one with")
    # --token wins over the environment.
    good = exportflow({**env, "EXPORTFLOW_TOKEN": "x"}, "jobs", "--token", api.token("nobody"))
    assert (good.returncode, good.stdout) == (0, "no exports\n"), good.stderr


def test_api_down_is_a_clear_error(client_env):
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["jobs"], ["submit", "tags", "--wait"], ["download", "x"]):
        run = exportflow({**client_env, "EXPORTFLOW_TOKEN": "t"}, *args, "--api", url)
        assert run.returncode == 2, run.stderr
        assert run.stderr.startswith(f"error [api_unavailable]: cannot reach {url} (")
        assert "is the API running (`exportflow up`)?" in run.stderr


def test_output_is_checked_before_anything_starts(api, as_user, user, tmp_path):
    no_wait = exportflow(as_user, "submit", "products", "-o", str(tmp_path / "p.csv"))
    assert no_wait.returncode == 2 and no_wait.stderr.startswith("error [invalid_request]: -o ")
    folder = exportflow(as_user, "submit", "products", "--wait", "-o", str(tmp_path))
    assert folder.returncode == 2 and folder.stderr.startswith("error [invalid_output]: ")
    assert api.rt.jobs.list_owned(user, 10) == []
