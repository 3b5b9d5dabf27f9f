"""A background export with a locale: its options are stored resolved in the job, take part
in the plan's fingerprint, and a killed run resumes into the uninterrupted file."""

from __future__ import annotations

import hashlib

import pytest

from flows.datapath.request import ExportRequest, plan_export
from flows.orchestration.checkpoint import plan_fingerprint
from flows.orchestration.export_flow import export_flow
from tests.flows.helpers import reference, stored
from tests.flows.orchestration.test_resume_plans import chunk_tasks, crash_after


def locale_job(rt, **options):
    """A job created as the API creates it: the planned (resolved) request is stored."""
    plan = plan_export(ExportRequest(module="products", **options), rt.registry, rt.settings)
    body = plan.request.model_dump(mode="json", by_alias=True)
    return rt.jobs.create("user-1", "products", plan.request.format, "background", body)


def test_the_job_stores_the_resolved_options(rt):
    job = locale_job(rt, locale="de-DE", null_text="n/a")
    assert {k: job.options[k] for k in ("delimiter", "decimal_separator", "date_pattern")} == {
        "delimiter": ";",
        "decimal_separator": ",",
        "date_pattern": "dd.MM.yyyy",
    }
    assert job.options["null_text"] == "n/a" and job.options["locale"] == "de-DE"


def test_the_options_are_part_of_the_fingerprint(rt):
    def fingerprint(**options):
        plan = plan_export(ExportRequest(module="products", **options), rt.registry, rt.settings)
        return plan_fingerprint(plan, rt.settings)

    prints = {
        fingerprint(),
        fingerprint(locale="de-DE"),
        fingerprint(locale="de-DE", null_text="n/a"),
        fingerprint(date_pattern="dd.MM.yyyy"),
        fingerprint(locale="fr-FR"),
    }
    assert len(prints) == 5
    assert fingerprint(locale="de-DE") == fingerprint(locale="de-DE")


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_a_killed_locale_export_resumes_into_the_same_file(rt, monkeypatch, fmt):
    job_id = str(locale_job(rt, locale="de-DE", format=fmt).id)
    with monkeypatch.context() as m:
        crash_after(m, 3)
        with pytest.raises(SystemExit):
            export_flow(job_id)
    before = reference(rt, rt.jobs.get(job_id))
    # An operator redefines the preset meanwhile: the job keeps the options it was given.
    presets = {"de-DE": {"delimiter": "|", "decimal_separator": ","}}
    monkeypatch.setattr(rt.settings, "locale_presets", presets)
    state = export_flow(job_id, return_state=True)
    done = rt.jobs.get(job_id)
    data = stored(rt, done.file_key)
    assert data == before == reference(rt, done)
    assert hashlib.sha256(data).hexdigest() == done.sha256
    assert chunk_tasks(state.state_details.flow_run_id) == [f"chunk-{i}" for i in range(3, 7)]
    if fmt == "csv":
        first = data.split(b"\r\n")[1]
        assert first.startswith(b'1;"00000001";') and b'"79,19"' in first  # a decimal comma
