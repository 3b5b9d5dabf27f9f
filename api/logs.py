"""The API's logs: a request id on every request (taken from `X-Request-ID` or made, and
echoed), the request's context on its records, one record per request, and the set-up."""

from __future__ import annotations

import importlib
import logging
import re
import time
import uuid
from collections.abc import Callable

from fastapi import Request
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flows.control.logs import bind, configure_logging, open_context
from flows.control.settings import Settings

HEADER = "X-Request-ID"
# A caller's id is kept only when it is plainly an id: it ends up in logs and headers.
ACCEPTED_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
# Probes arrive every few seconds; at INFO they would bury the requests that matter.
QUIET_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})

log = logging.getLogger("api.requests")


class RequestContext:
    """ASGI middleware: opens each request's log context and logs the request when done."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get(HEADER, "")
        request_id = given if ACCEPTED_ID.fullmatch(given) else uuid.uuid4().hex
        # Left open on purpose: each request runs in its own task, so the context ends
        # with it, and the unhandled-error handler (outside this middleware) still sees it.
        open_context(requestId=request_id)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            method, path = scope["method"], scope["path"]
            ms = round((time.perf_counter() - started) * 1000)
            data = {"method": method, "path": path, "status": status, "durationMs": ms}
            level = logging.DEBUG if path in QUIET_PATHS else logging.INFO
            log.log(level, "%s %s %s in %s ms", method, path, status, ms, extra={"data": data})


async def tag_route(request: Request) -> None:
    """Add the module and job id the path names to the request's log context."""
    params = request.path_params
    bind(module=params.get("module"), jobId=params.get("job_id"))


def start_logging(settings: Settings) -> Callable[[], None]:
    """Configure the process's logs for the API; returns what undoes it."""
    # Prefect configures logging once, when prefect.main is first imported; importing it
    # now keeps that from overriding this configuration at the first flow submission.
    importlib.import_module("prefect.main")
    # uvicorn's own lines go through the same handler; its access line is replaced by
    # the request record above, which also has the request id, user and duration; httpx
    # would log every call to the Prefect API at INFO.
    return configure_logging(
        settings.log_format,
        settings.log_level,
        adopt=("uvicorn", "uvicorn.error"),
        mute=("uvicorn.access",),
        quiet=("httpx",),
    )
