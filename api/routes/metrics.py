"""GET /metrics: Prometheus's text exposition format; no authentication, like the probes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4 as TEXT_FORMAT
from prometheus_client import CollectorRegistry, generate_latest

router = APIRouter(tags=["health"])


def get_registry(request: Request) -> CollectorRegistry:
    """The app's metrics registry (built by its lifespan)."""
    return request.app.state.metrics


RegistryDep = Annotated[CollectorRegistry, Depends(get_registry)]


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"description": "The metrics", "content": {TEXT_FORMAT: {}}}},
)
def metrics(registry: RegistryDep) -> Response:
    """Export counts, durations, rows and bytes from the job table; this process's 429s."""
    # A sync handler: FastAPI runs it in a worker thread, so the queries never block the loop.
    # Format 0.0.4, which every Prometheus reads: the names here need none of 1.0's escaping.
    return Response(generate_latest(registry), media_type=TEXT_FORMAT)
