"""The caller's exports: status (and its legacy alias), list, cancel/delete, download."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, BackgroundTasks, Query, Request, Response
from fastapi.responses import RedirectResponse

from api.deps import CallerDep, Services, ServicesDep
from api.files import friendly_name, sign_link
from api.pagination import decode_cursor, encode_cursor
from api.schemas import DownloadLink, ErrorBody, ExportPage, ExportStatus, Status, status_view
from api.status import export_status
from flows.control.errors import JobNotFound
from flows.control.jobs import ACTIVE, Job
from flows.orchestration.job_run import end_job, remove_job_files
from flows.orchestration.notify_task import notify

ERRORS = {code: {"model": ErrorBody} for code in (401, 404, 422, 503)}
router = APIRouter(tags=["exports"], responses=ERRORS)

MAX_PAGE = 100


async def _view(request: Request, services: Services, job: Job) -> ExportStatus:
    """The job as its owner sees it; its run's state is read only while it is active."""
    state = None
    if job.status in ACTIVE and job.flow_run_id is not None:
        state = await services.runs.read_state(job.flow_run_id)
    status, name = export_status(job, state, services.settings.max_resume_attempts)
    return status_view(job, status, name, _file_url(request, services, job))


def _file_url(request: Request, services: Services, job: Job) -> str:
    """The download endpoint, under the same public base as the links it hands out."""
    path = request.app.url_path_for("download_export", job_id=str(job.id))
    return services.settings.public_api_url.rstrip("/") + path


@router.get("/api/exports/{job_id}", response_model=ExportStatus, response_model_by_alias=True)
async def get_export(
    job_id: uuid.UUID, request: Request, services: ServicesDep, caller: CallerDep
) -> ExportStatus:
    """One of the caller's exports; another user's is not found, exactly like a missing one."""
    job = await to_thread.run_sync(services.jobs.get_owned, job_id, caller.user_id)
    return await _view(request, services, job)


@router.get(
    "/api/{module}/export/status/{job_id}",
    response_model=ExportStatus,
    response_model_by_alias=True,
    summary="Get Export (by module)",
)
async def get_module_export(
    module: str, job_id: uuid.UUID, request: Request, services: ServicesDep, caller: CallerDep
) -> ExportStatus:
    """The same as GET /api/exports/{job_id}, for clients that poll under the module."""
    job = await to_thread.run_sync(services.jobs.get_owned, job_id, caller.user_id)
    if job.module != module:
        # The job exists but not under this path: as unknown as another user's.
        raise JobNotFound(f"no export job {job_id} of module {module!r}")
    return await _view(request, services, job)


@router.get("/api/exports", response_model=ExportPage, response_model_by_alias=True)
def list_exports(
    request: Request,
    services: ServicesDep,
    caller: CallerDep,
    status: Annotated[list[Status] | None, Query()] = None,
    # PostgreSQL text cannot hold U+0000: refused here as a 422, not sent to the database.
    module: Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00]*$")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    cursor: str | None = None,
) -> ExportPage:
    """The caller's exports, newest first, a page at a time (status as the rows record it)."""
    after = decode_cursor(cursor) if cursor else None
    jobs = services.jobs.list_owned(caller.user_id, limit + 1, after, status, module)
    page = jobs[:limit]
    items = [status_view(job, job.status, None, _file_url(request, services, job)) for job in page]
    next_cursor = encode_cursor(page[-1]) if len(jobs) > limit else None
    return ExportPage(items=items, next_cursor=next_cursor)


@router.delete(
    "/api/exports/{job_id}",
    response_model=ExportStatus,
    response_model_by_alias=True,
    responses={202: {"model": ExportStatus, "description": "Cancellation under way"}},
)
async def delete_export(
    job_id: uuid.UUID,
    request: Request,
    response: Response,
    background: BackgroundTasks,
    services: ServicesDep,
    caller: CallerDep,
) -> ExportStatus:
    """Cancel an active export, or delete a finished one's file; repeating is harmless."""
    job = await to_thread.run_sync(services.jobs.get_owned, job_id, caller.user_id)
    if job.status in ACTIVE:
        stopping = job.flow_run_id is not None and await services.runs.cancel_run(job.flow_run_id)
        if stopping:
            response.status_code = 202  # the flow's hook ends the job and removes its files
        elif await to_thread.run_sync(_end_cancelled, services, job):
            # No run will tell the owner: their notifications go out after this answer.
            background.add_task(notify, services.rt, str(job.id), as_tasks=False)
    elif job.status == "completed":
        await to_thread.run_sync(_expire, services, job)
    job = await to_thread.run_sync(services.jobs.get_owned, job_id, caller.user_id)
    return await _view(request, services, job)


@router.get(
    "/api/exports/{job_id}/download",
    status_code=302,
    response_class=RedirectResponse,
    responses={
        302: {
            "description": "To a fresh link to the file",
            "headers": {"Location": {"schema": {"type": "string"}, "description": "The link"}},
        },
        409: {"model": ErrorBody, "description": "No file yet"},
        410: {"model": ErrorBody, "description": "The file expired"},
    },
)
def download_export(job_id: uuid.UUID, services: ServicesDep, caller: CallerDep):
    """A redirect to a fresh link, valid for the link lifetime or the file's remaining life."""
    job = services.jobs.get_owned(job_id, caller.user_id)
    url, _ = sign_link(job, services.storage, services.settings)
    return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})


@router.get(
    "/api/exports/{job_id}/link",
    response_model=DownloadLink,
    response_model_by_alias=True,
    responses={
        409: {"model": ErrorBody, "description": "No file yet"},
        410: {"model": ErrorBody, "description": "The file expired"},
    },
)
def link_export(job_id: uuid.UUID, response: Response, services: ServicesDep, caller: CallerDep):
    """The same fresh link as the redirect, as JSON: a browser page opens it itself, since
    following a redirect to another origin (S3) from script would need CORS on the bucket."""
    job = services.jobs.get_owned(job_id, caller.user_id)
    url, ttl = sign_link(job, services.storage, services.settings)
    response.headers["Cache-Control"] = "no-store"
    expires_at = datetime.now(UTC) + timedelta(seconds=ttl)
    return DownloadLink(url=url, filename=friendly_name(job), expires_at=expires_at)


def _end_cancelled(services: Services, job: Job) -> bool:
    """End a job that has no live run to do it (never submitted, or its run never started);
    False when it had ended meanwhile."""
    return end_job(services.rt, str(job.id), "cancelled", "cancelled", "cancelled by request")


def _expire(services: Services, job: Job) -> None:
    """Delete a finished job's files, then mark it expired."""
    # The cleanup flow's order: a failure in between leaves a completed job whose delete
    # can simply be repeated.
    remove_job_files(services.rt, str(job.id))
    services.jobs.mark_expired(job.id)
