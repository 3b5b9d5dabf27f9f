"""The FastAPI app: `create_app(settings)`, and `app` for `uvicorn api.main:app`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api import errors, logs, metrics
from api.auth import TokenVerifier
from api.body_limit import BodyLimit
from api.deps import Services
from api.page import mount_page
from api.routes import dev, downloads, exports, health, modules, preview, schedules, submit
from api.routes import metrics as metrics_route
from api.runs import Orchestrator
from flows.control.database import database_url
from flows.control.jobs import JobStore
from flows.control.registry import load_checked_registry
from flows.control.settings import Settings, get_settings
from flows.control.storage import DOWNLOAD_PURPOSE, Storage
from flows.orchestration.runtime import Runtime


def build_runtime(settings: Settings) -> Runtime:
    """The registry, job store and storage the settings name (blocking: run at start-up)."""
    url = database_url(settings)
    registry = load_checked_registry(settings.datasets, settings.read_database_url or url)
    return Runtime(settings, url, registry, Storage.from_settings(settings), JobStore(url))


def create_app(settings: Settings | None = None, rt: Runtime | None = None) -> FastAPI:
    """The app for `settings` (default: the environment's) and, in tests, a ready runtime."""
    settings = settings or get_settings()
    # An unsafe configuration fails here, before anything listens: the default secret
    # outside development, or no way to verify tokens. The database, registry and storage
    # are opened by the lifespan, so importing this module needs no database.
    settings.secret(DOWNLOAD_PURPOSE)  # ConfigError for the default secret in production
    verifier = TokenVerifier(settings)
    # The Prefect settings in force where the app is created.
    runs = Orchestrator(cache_seconds=settings.run_state_cache_seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop_logging = logs.start_logging(settings)
        try:
            runtime = rt or await to_thread.run_sync(build_runtime, settings)
            app.state.services = Services(settings, verifier, runtime, runs)
            app.state.metrics = metrics.registry_for(runtime.jobs)
            async with runs.kept_open():
                yield
        finally:
            stop_logging()

    app = FastAPI(
        title="exportflow",
        summary="Export database tables to CSV and XLSX.",
        version="0.1.0",
        lifespan=lifespan,
        dependencies=[Depends(logs.tag_route)],
    )
    # Before CORS, so CORS stays outside it and a browser can read the 413.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", logs.HEADER],
            # A browser script may read the saved file's name only when it is exposed.
            expose_headers=["Content-Disposition", "Location", "Retry-After", logs.HEADER],
        )
    # Added last, so outermost: CORS answers (preflights too) also carry the request id.
    app.add_middleware(logs.RequestContext)
    errors.install(app)
    routes = [health, metrics_route, modules, exports, preview, submit, downloads, schedules]
    # Tokens for the asking only on a development machine: elsewhere the path is a 404.
    for module in routes + ([dev] if settings.env == "development" else []):
        app.include_router(module.router)
    # The export page: plain HTML, CSS and ES modules as they are (no build step).
    mount_page(app)
    return app


app = create_app()
