"""A background export with related sheets resumes each table after its last stored chunk,
and its file is byte-identical to an uninterrupted export's."""

from __future__ import annotations

import hashlib
import io
import zipfile

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from flows.orchestration import related
from flows.orchestration.export_flow import export_flow
from tests.flows.helpers import new_job, reference, stored

OPTIONS = {"relations": ["tags"], "filters": [{"column": "id", "op": "lte", "value": 900}]}


def task_names(flow_run_id) -> list[str]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return sorted(t.name for t in runs if t.name.startswith(("chunk-", "related-")))


@pytest.mark.parametrize("fmt", ["xlsx", "csv"])
def test_related_sheet_resumes_after_its_own_checkpoint(rt, monkeypatch, fmt):
    job_id = str(new_job(rt, format=fmt, **OPTIONS).id)
    original = related.export_related_chunk.fn

    def dies(job_id, attempt, section, index, *bounds):
        if index == 2:
            raise SystemExit("worker killed")
        return original(job_id, attempt, section, index, *bounds)

    with monkeypatch.context() as m:
        m.setattr(related.export_related_chunk, "fn", dies)
        with pytest.raises(SystemExit):
            export_flow(job_id)
    stuck = rt.jobs.get(job_id)
    sections = [c.get("section") for c in stuck.checkpoint["chunks"]]
    main = sections.count(None)
    assert stuck.status == "processing" and main >= 3 and sections[main:] == ["tags", "tags"]
    assert set(stuck.checkpoint["limits"]) == {"tags"}

    state = export_flow(job_id, return_state=True)
    assert state.is_completed()
    done = rt.jobs.get(job_id)
    data = stored(rt, done.file_key)
    assert data == reference(rt, done)
    assert hashlib.sha256(data).hexdigest() == done.sha256
    names = task_names(state.state_details.flow_run_id)
    # The module's rows were all stored: only the related sheet's later chunks ran again.
    assert names and all(n.startswith("related-tags-") for n in names)
    assert "related-tags-0" not in names and "related-tags-1" not in names
    assert "related-tags-2" in names
    assert done.file_key.endswith(".xlsx" if fmt == "xlsx" else ".zip")
    assert (
        done.processed_rows == done.total_rows == sum(c["rows"] for c in done.checkpoint["chunks"])
    )
    if fmt == "csv":
        assert zipfile.ZipFile(io.BytesIO(data)).namelist() == [
            "products.csv",
            "Tags.csv",
        ]


def test_a_related_sheet_without_rows_still_gets_its_sheet(rt):
    # Product 4 has no tags: the Tags sheet has just its header, as the engine writes it.
    job_id = str(new_job(rt, format="xlsx", relations=["tags"], ids=[4]).id)
    assert export_flow(job_id, return_state=True).is_completed()
    done = rt.jobs.get(job_id)
    data = stored(rt, done.file_key)
    assert data == reference(rt, done)
    workbook = zipfile.ZipFile(io.BytesIO(data)).read("xl/workbook.xml").decode()
    assert workbook.count("<sheet ") == 2 and 'name="Tags"' in workbook
    assert [c.get("section") for c in done.checkpoint["chunks"]] == [None]
