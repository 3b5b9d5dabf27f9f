"""POST /api/{module}/export: count the rows, then answer directly, stream, or start a job."""

from __future__ import annotations

from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse, Response, StreamingResponse

from api import strategies
from api.deps import CallerDep, Services, ServicesDep
from api.options import ExportOptions, to_request
from api.schemas import ErrorBody
from flows.control.admission import Limits, admit
from flows.control.jobs import Job
from flows.datapath.engine import count_rows
from flows.datapath.request import plan_export
from flows.datapath.writers import media_type

ERRORS = {code: {"model": ErrorBody} for code in (401, 403, 404, 422, 429, 503)}
router = APIRouter(tags=["exports"], responses=ERRORS)

IdempotencyKey = Annotated[str | None, Header(min_length=1, max_length=200)]


@router.post(
    "/api/{module}/export",
    responses={
        200: {"description": "The file (direct or streamed)", "content": {"text/csv": {}}},
        202: {"description": "A background job: poll `pollUrl`"},
    },
)
async def submit_export(
    module: str,
    body: ExportOptions,
    services: ServicesDep,
    caller: CallerDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Export `module`: the file itself up to the stream limit, else a job to poll."""
    plan = plan_export(to_request(module, body), services.rt.registry, services.settings, caller)
    total = await to_thread.run_sync(count_rows, services.rt.source_url, plan)
    # A keyed request must be answerable again later, so it is always a job.
    wanted = body.mode == "background" or idempotency_key is not None
    strategy = strategies.choose(total, wanted, services)
    settings = services.settings
    limits = Limits(settings.rate_limit_per_hour, settings.max_active_background)
    options = plan.request.model_dump(mode="json", by_alias=True)
    job, created = await to_thread.run_sync(
        admit, services.jobs, caller.user_id, strategy, options, limits, idempotency_key
    )
    headers = {
        "Content-Disposition": f'attachment; filename="{strategies.attachment_name(module, plan)}"'
    }
    if strategy == "direct" and created:
        data = await to_thread.run_sync(strategies.run_direct, services, plan, job)
        return Response(data, media_type=media_type(plan.request), headers=headers)
    if strategy == "stream" and created:
        body_iter = strategies.stream_body(services, plan, job)
        return StreamingResponse(body_iter, media_type=media_type(plan.request), headers=headers)
    if created:
        await to_thread.run_sync(strategies.submit, services, job, total)
    return await _accepted(services, job)


async def _accepted(services: Services, job: Job) -> JSONResponse:
    """202 with where to poll; a repeated key gets the same body for the same job."""
    job = await to_thread.run_sync(services.jobs.get, job.id)
    poll = f"{services.settings.public_api_url.rstrip('/')}/api/exports/{job.id}"
    body = {
        "jobId": str(job.id),
        "status": job.status,
        "totalRows": job.total_rows,
        "pollUrl": poll,
    }
    return JSONResponse(body, 202, headers={"Location": poll})
