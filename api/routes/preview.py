"""POST /api/{module}/export/preview: what an export would be, without starting one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from api import strategies
from api.deps import CallerDep, ServicesDep
from api.options import ExportOptions, to_request
from api.routes.submit import ReadableBody
from api.schemas import ErrorBody, Preview

ERRORS = {code: {"model": ErrorBody} for code in (401, 403, 404, 422, 503, 504)}
router = APIRouter(tags=["exports"], responses=ERRORS, route_class=ReadableBody)


@router.post(
    "/api/{module}/export/preview",
    response_model=Preview,
    responses={413: {"model": ErrorBody, "description": "The body is over the size limit"}},
)
async def preview_export(
    module: Annotated[str, Path(examples=["products"])],
    body: ExportOptions,
    services: ServicesDep,
    caller: CallerDep,
) -> Preview:
    """The rows, strategy and file name an export with these options would have."""
    # Counted like the export itself, but nothing is admitted: no row, no rate limit.
    plan, total = await strategies.plan_and_count(services, to_request(module, body), caller)
    return Preview(
        total_rows=total,
        strategy=strategies.choose(
            total, body.mode == "background" or body.notify is not None, services
        ),
        format=plan.request.format,
        filename=strategies.attachment_name(module, plan),
    )
