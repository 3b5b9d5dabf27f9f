"""Liveness, readiness and the API's index; no authentication (the export page is static)."""

from __future__ import annotations

import logging

import anyio
from anyio import to_thread
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ServicesDep
from api.schemas import ErrorBody, Health, Index, Ready
from flows.control.database import pg_connect

log = logging.getLogger("api")
router = APIRouter(tags=["health"])

CHECK_TIMEOUT_SECONDS = 3.0
STORAGE_PROBE = "exports/.readyz"


@router.get("/api", response_model=Index)
def index() -> Index:
    """What this service is and where to look next."""
    return Index(
        service="exportflow",
        page="/",
        docs="/docs",
        health="/healthz",
        ready="/readyz",
        exports="/api/exports",
    )


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is alive (nothing else is checked)."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Ready,
    responses={503: {"model": ErrorBody, "description": "A part is unavailable; it is named"}},
)
async def readyz(services: ServicesDep) -> JSONResponse:
    """PostgreSQL, storage and the Prefect API each answer within a short timeout."""
    timeout = int(CHECK_TIMEOUT_SECONDS)

    def database() -> None:
        with pg_connect(services.jobs.url, connect_timeout=timeout) as conn:
            conn.execute("SELECT 1 FROM export_jobs LIMIT 1")

    checks = {
        "database": lambda: to_thread.run_sync(database, abandon_on_cancel=True),
        "storage": lambda: to_thread.run_sync(
            services.storage.exists, STORAGE_PROBE, abandon_on_cancel=True
        ),
        "orchestrator": services.runs.healthcheck,
    }
    parts: dict[str, str] = {}

    async def run(name: str, check) -> None:
        parts[name] = await _check(name, check)

    # Concurrently: a probe stays as short as the slowest part's timeout.
    async with anyio.create_task_group() as group:
        for name, check in checks.items():
            group.start_soon(run, name, check)
    parts = {name: parts[name] for name in checks}
    failing = [name for name, ok in parts.items() if ok != "ok"]
    if not failing:
        return JSONResponse(Ready(status="ready", parts=parts).model_dump())
    body = {
        "error": {
            "code": "not_ready",
            "message": f"unavailable: {', '.join(failing)}",
            "details": {"parts": parts},
        }
    }
    return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})


async def _check(name: str, check) -> str:
    """`ok`, or why the part failed (its error's class only: no hosts or credentials)."""
    try:
        with anyio.fail_after(CHECK_TIMEOUT_SECONDS):
            await check()
    except TimeoutError:
        return f"no answer within {CHECK_TIMEOUT_SECONDS:.0f} s"
    except Exception as exc:
        log.warning("readiness check of %s failed: %r", name, exc)
        return f"failed ({type(exc).__name__})"
    return "ok"
