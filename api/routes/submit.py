"""POST /api/{module}/export: count the rows, then answer directly, stream, or start a job."""

from __future__ import annotations

from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Header, Path, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from api import strategies
from api.deps import CallerDep, Services, ServicesDep
from api.options import ExportOptions, to_request
from api.schemas import Accepted, ErrorBody
from flows.control.admission import Limits, admit
from flows.control.errors import InvalidRequest
from flows.control.jobs import Job
from flows.datapath.writers import XLSX_MEDIA_TYPE, media_type

ERRORS = {code: {"model": ErrorBody} for code in (401, 403, 404, 422, 429, 503, 504)}
UNREADABLE_BODY = "body: not JSON text in UTF-8; send the export options as a JSON object"
FILE = {"schema": {"type": "string", "format": "binary"}}
SECONDS = {"schema": {"type": "integer"}, "description": "Seconds to wait before trying again"}
JOB_ID = {"job_id": "$response.body#/jobId"}
# What a client does next with the job it was given (clients and generated tests follow them).
FOLLOW = {
    name: {
        "operationRef": f"#/paths/~1api~1exports~1{{job_id}}{tail}/{method}",
        "parameters": JOB_ID,
    }
    for name, tail, method in (
        ("GetExport", "", "get"),
        ("CancelExport", "", "delete"),
        ("DownloadExport", "~1download", "get"),
    )
}


class ReadableBody(APIRoute):
    """A body that cannot be decoded is a 422 invalid_request, like any other bad body."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except HTTPException as exc:
                # FastAPI answers bytes that are not text (JSON in Latin-1, say) with a bare
                # 400 that says nothing to change; the handlers themselves never raise one.
                if exc.status_code != 400:
                    raise
                raise InvalidRequest(UNREADABLE_BODY) from None

        return route


router = APIRouter(tags=["exports"], responses=ERRORS, route_class=ReadableBody)
IdempotencyKey = Annotated[str | None, Header(min_length=1, max_length=200)]


@router.post(
    "/api/{module}/export",
    response_class=Response,
    responses={
        200: {
            "description": "The file (direct or streamed): CSV, gzipped CSV, XLSX, or with "
            "related sheets a zip of CSV files",
            "content": {
                "text/csv": FILE,
                "application/gzip": FILE,
                "application/zip": FILE,
                XLSX_MEDIA_TYPE: FILE,
            },
        },
        202: {
            "model": Accepted,
            "description": "A background job: poll `pollUrl`",
            "headers": {"Location": {"schema": {"type": "string"}, "description": "pollUrl"}},
            "links": FOLLOW,
        },
        413: {"model": ErrorBody, "description": "The body is over the size limit"},
        429: {
            "model": ErrorBody,
            "description": "Too many exports, or too many running: retry later",
            "headers": {"Retry-After": SECONDS},
        },
    },
)
async def submit_export(
    module: Annotated[str, Path(examples=["products"])],
    body: ExportOptions,
    services: ServicesDep,
    caller: CallerDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Export `module`: the file itself up to the stream limit, else a job to poll."""
    plan, total = await strategies.plan_and_count(services, to_request(module, body), caller)
    # A keyed request must be answerable again later, and one asking to be notified
    # is told when a job ends: both are always jobs.
    wanted = body.mode == "background" or idempotency_key is not None or body.notify is not None
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
    body = Accepted(job_id=job.id, status=job.status, total_rows=job.total_rows, poll_url=poll)
    return JSONResponse(
        body.model_dump(mode="json", by_alias=True), 202, headers={"Location": poll}
    )
