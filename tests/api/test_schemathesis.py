"""Schemathesis against the app's own OpenAPI document: every operation, authenticated for
every module, over a real HTTP server; no 5xx and no response outside the documented ones."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from flows.control.registry import load_registry
from flows.control.settings import DEMO_DATASETS
from flows.control.settings import get_settings as cached_settings
from flows.orchestration.export_flow import export_flow
from flows.orchestration.scheduled_flow import scheduled_export
from tests.api.conftest import JWT_SECRET, SECRET, LoopbackServer

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Per operation, and scenarios along the links: the file runs in well under a minute.
MAX_EXAMPLES = 20
WORKFLOWS = 15


def openapi_document() -> dict:
    """The document the app serves; building it opens no database (that is the lifespan's)."""
    # Collection needs the operations before any fixture runs, so the document comes from
    # the routes; test_the_server_serves_the_document_under_test ties it to the live app.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EXPORTFLOW_ENV", "development")
        cached_settings.cache_clear()
        from api.main import create_app

        # Production, as the server under test runs: no development-only operations.
        secrets = {"secret_key": SecretStr(SECRET), "jwt_secret": SecretStr(JWT_SECRET)}
        production = cached_settings().model_copy(update={"env": "production", **secrets})
        document = create_app(production).openapi()
    cached_settings.cache_clear()
    return document


DOCUMENT = openapi_document()
schema = schemathesis.openapi.from_dict(DOCUMENT)
MODULES = sorted(load_registry(DEMO_DATASETS).modules)


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    """Most cases name a declared module: a random name only ever reaches the 404."""
    if not path_parameters or "module" not in path_parameters:
        return st.just(path_parameters)
    names = st.sampled_from(MODULES).map(lambda name: {**path_parameters, "module": name})
    return names | st.just(path_parameters)


ROOMY = {"rate_limit_per_hour": 100_000, "max_active_background": 100_000}


@pytest.fixture
def limits() -> dict:
    """Tight: generated requests reach them, and their 429 is part of the contract too."""
    return {"rate_limit_per_hour": 40, "max_active_background": 3}


@pytest.fixture
def api_settings(api_settings, limits):
    """Small thresholds, so that a generated export is a few rows or a job nothing runs."""
    return api_settings.model_copy(update={"direct_max_rows": 10, "stream_max_rows": 100, **limits})


@pytest.fixture
def server(harness, create_app, api_settings, rt):
    """The app under uvicorn; background jobs go to the test harness, where nothing runs them,
    and saved schedules hang on a deployment nothing serves."""
    export_flow.to_deployment(name="export").apply()
    scheduled_export.to_deployment(name="scheduled-export").apply()
    with LoopbackServer(create_app(api_settings, rt=rt)) as srv:
        yield srv


@pytest.fixture
def headers(token, registry, user):
    """A bearer token holding every module's permission."""
    perms = sorted({module.permission for module in registry.modules.values()})
    return {"Authorization": f"Bearer {token(user, *perms)}"}


def test_the_server_serves_the_document_under_test(server):
    assert httpx.get(f"{server.url}/openapi.json").json() == DOCUMENT


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    # The same examples on every run: the recursive filter groups (any/all) sometimes make
    # the generator give up on an operation ("Cannot generate an array with 1 demanded
    # elements"), which must not fail a build at random.
    derandomize=True,
    database=None,
    # One server per operation, shared by its examples on purpose: the limits count across them.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_every_operation_answers_as_documented(case, server, headers):
    case.call_and_validate(base_url=server.url, headers=headers, checks=CHECKS)


@pytest.fixture
def workflow(server, headers):
    """The state machine over the links: a started export is read, cancelled, downloaded."""

    class Workflow(schema.as_state_machine()):
        def get_call_kwargs(self, case):
            return {"base_url": server.url, "headers": headers}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(
                response, checks=CHECKS, transport_kwargs=kwargs or None, recorder=self.recorder
            )

    return Workflow


# Roomy limits: a replayed scenario must meet the same answers, not a 429 it earned earlier.
@pytest.mark.parametrize("limits", [ROOMY], ids=["roomy"])
def test_workflows_along_the_links_answer_as_documented(workflow):
    workflow.run(
        settings=settings(
            max_examples=WORKFLOWS,
            stateful_step_count=6,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
    )


def test_a_body_that_is_not_utf8_is_a_422_naming_the_body(server, headers):
    headers = {**headers, "Content-Type": "application/json"}
    body = '{"scope": "all", "timezone": "Europe/Zürich"}'.encode("latin-1")
    resp = httpx.post(f"{server.url}/api/products/export", content=body, headers=headers)
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["message"] == (
        "body: not JSON text in UTF-8; send the export options as a JSON object"
    )


def test_a_download_key_no_export_can_have_is_a_404_as_documented(server):
    resp = httpx.get(f"{server.url}/downloads/a%0Ab", params={"expires": 1, "signature": "x"})
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"
    assert "404" in DOCUMENT["paths"]["/downloads/{key}"]["get"]["responses"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"filters": [{"column": "name", "op": "contains", "value": "a\x00"}]}, "filters.0.value"),
        ({"filters": [{"column": "sku", "op": "in", "value": ["1", "\x00"]}]}, "filters.0.value.1"),
        ({"scope": "selected", "selectedIds": ["\x00"]}, "selectedIds.0"),
    ],
)
def test_a_nul_character_is_a_422_naming_the_field_and_no_job(
    server, headers, user, body, field, api_settings
):
    resp = httpx.post(f"{server.url}/api/products/export", json=body, headers=headers)
    assert resp.status_code == 422, resp.text
    message = "contains U+0000 (a NUL character); remove it"
    assert resp.json()["error"] == {
        "code": "invalid_request",
        "message": f"body.{field}: {message}",
        "details": {"fields": [{"field": f"body.{field}", "message": message}]},
    }
    with psycopg.connect(api_settings.database_url) as conn:
        assert conn.execute(
            "SELECT count(*) FROM export_jobs WHERE user_id = %s", (user,)
        ).fetchone() == (0,)


def test_a_gzipped_download_is_sent_as_application_gzip_as_documented(server, rt, user, headers):
    data = gzip.compress(b"ID,Name\r\n1,a\r\n")
    job = rt.jobs.create(user, "tags", "csv", "background", {"module": "tags", "gzip": True})
    rt.jobs.claim(job.id, job.attempt, None)
    key = f"exports/{job.id}/tags.csv.gz"
    with rt.storage.open_write(key) as f:
        f.write(data)
    expires = datetime.now(UTC) + timedelta(hours=1)
    rt.jobs.complete(job.id, job.attempt, 1, (key, len(data), "0" * 64), expires)
    link = httpx.get(f"{server.url}/api/exports/{job.id}/download", headers=headers)
    assert link.status_code == 302, link.text
    # The link names the public base (http://testserver here): fetched from this server.
    url = httpx.URL(link.headers["location"])
    resp = httpx.get(f"{server.url}{url.raw_path.decode()}")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/gzip"
    assert resp.content == data
    assert resp.headers["content-disposition"].endswith('.csv.gz"')
    documented = DOCUMENT["paths"]["/downloads/{key}"]["get"]["responses"]["200"]["content"]
    assert "application/gzip" in documented
