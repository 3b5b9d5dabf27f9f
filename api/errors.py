"""The one place errors become HTTP: `{"error": {"code", "message", "details"}}` for all.

unknown_module is a 404, not a 422: the module is part of the path (`/api/{module}/...`),
so an unknown one is a resource that does not exist. The rest of the InvalidRequest family
is 422: the request was understood, but a value must change.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.logs import HEADER as REQUEST_ID_HEADER
from api.metrics import TOO_MANY_REQUESTS
from flows.control import errors
from flows.control.logs import current_context
from flows.datapath.filters import GROUP_TAGS

log = logging.getLogger("api")

INTERNAL_MESSAGE = "the server failed to handle the request; operators have the details"
CONFIG_MESSAGE = "the service is misconfigured; operators have the details"


class Unauthorized(errors.ExportflowError):
    """The bearer token is missing, malformed, expired or not signed by a trusted key."""

    code = "invalid_token"


class AuthUnavailable(errors.ExportflowError):
    """The key set that verifies tokens could not be fetched."""

    code = "auth_unavailable"
    transient = True


class NotReady(errors.ExportflowError):
    """The export has no file (yet): still running, failed or cancelled."""

    code = "not_ready"


class InvalidLink(errors.ExportflowError):
    """A download link whose signature does not match: altered or forged."""

    code = "invalid_link"


class Gone(errors.ExportflowError):
    """A download link that expired, or a file that expired or is missing."""

    code = "link_expired"


class FileGone(Gone):
    """The export's file expired or is missing."""

    code = "file_expired"


class PrefectUnavailable(errors.ExportflowError):
    """The Prefect API could not be reached to change a flow run."""

    code = "orchestrator_unavailable"
    transient = True


# Most specific first: the first class an error is an instance of decides its status.
STATUS: list[tuple[type[errors.ExportflowError], int]] = [
    (Unauthorized, 401),
    (errors.UnknownModule, 404),
    (errors.InvalidRequest, 422),
    (errors.PermissionDenied, 403),
    (InvalidLink, 403),
    (errors.JobNotFound, 404),
    (errors.ScheduleNotFound, 404),
    (errors.TooManySchedules, 409),
    (NotReady, 409),
    (Gone, 410),
    (errors.LimitExceeded, 429),
    (errors.ConfigError, 500),
    # The database did not answer within the export's time limit: the upstream timed out.
    (errors.SourceTimeout, 504),
    (errors.SourceUnavailable, 503),
    (errors.StorageUnavailable, 503),
    (AuthUnavailable, 503),
    (PrefectUnavailable, 503),
    (errors.OrchestratorUnavailable, 503),
]

# The part a 503 names, so that a client (and an operator) knows what is down.
PARTS = {
    errors.SourceUnavailable: "database",
    errors.StorageUnavailable: "storage",
    AuthUnavailable: "key set",
    PrefectUnavailable: "orchestrator",
    errors.OrchestratorUnavailable: "orchestrator",
}


def status_of(exc: errors.ExportflowError) -> int:
    """The HTTP status of an exportflow error."""
    return next((status for cls, status in STATUS if isinstance(exc, cls)), 500)


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict:
    """The one error shape."""
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(
    status: int, code: str, message: str, details: dict | None = None, headers=None
) -> JSONResponse:
    """A JSON error response in the one shape."""
    return JSONResponse(error_body(code, message, details), status, headers=headers)


async def exportflow_error(request: Request, exc: errors.ExportflowError) -> JSONResponse:
    """An ExportflowError: its code and public message (internals, in `detail`, are logged)."""
    status = status_of(exc)
    if exc.detail:
        log.warning("%s %s: %s: %s", request.method, request.url.path, exc.code, exc.detail)
    if isinstance(exc, errors.ConfigError):
        log.error("configuration error: %s", exc.message)
        return error_response(500, exc.code, CONFIG_MESSAGE)
    headers = None
    if isinstance(exc, Unauthorized):
        headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    if isinstance(exc, errors.LimitExceeded):
        TOO_MANY_REQUESTS.labels(exc.code).inc()
        headers = {"Retry-After": str(exc.retry_after)}
        details = {"retryAfter": exc.retry_after}
        return error_response(status, exc.code, exc.message, details, headers)
    part = next((name for cls, name in PARTS.items() if isinstance(exc, cls)), None)
    if part is not None:
        headers = {"Retry-After": "5"}
        message = f"the {part} is unavailable; try again shortly"
        return error_response(status, exc.code, message, {"part": part}, headers)
    return error_response(status, exc.code, exc.message, headers=headers)


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's own validation: 422 invalid_request, each bad field by its path."""
    fields = [
        # A filter group's tag is not a field the client wrote: left out of its path.
        {
            "field": ".".join(str(p) for p in err["loc"] if p not in GROUP_TAGS),
            "message": err["msg"],
        }
        for err in exc.errors()
    ]
    first = fields[0] if fields else {"field": "request", "message": "invalid"}
    message = f"{first['field']}: {first['message']}"
    return error_response(422, "invalid_request", message, {"fields": fields})


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Starlette's own errors (no such route, wrong method) in the same shape."""
    codes = {404: "not_found", 405: "method_not_allowed"}
    code = codes.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    """A bug: logged with its traceback, answered with no internals."""
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    # Starlette answers an unhandled error outside the middleware that sets this header.
    request_id = current_context().get("requestId")
    headers = {REQUEST_ID_HEADER: request_id} if request_id else None
    return error_response(500, "internal", INTERNAL_MESSAGE, headers=headers)


def install(app: FastAPI) -> None:
    """Register the handlers on `app`."""
    app.add_exception_handler(errors.ExportflowError, exportflow_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, internal_error)
