"""Structured logs: one JSON object per line, the request's context on every record, and
the one record every finished export leaves (`exportflow.exports`).

A record's fields come from three places, later ones winning: the standard ones (time,
level, logger, message), the context of the request or run that emitted it (`bind`),
and the record's own `data` (`log.info(..., extra={"data": {...}})`; `extra` keys of
their own would clash with LogRecord's attributes, `module` among them)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterable
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flows.control.jobs import Job

EXPORTS = logging.getLogger("exportflow.exports")

# A dict, mutated in place by `bind`: code running in a worker thread (anyio copies the
# context into it) then adds to the request's context instead of to a copy of its own.
_context: ContextVar[dict[str, Any] | None] = ContextVar("exportflow_log_context", default=None)


def open_context(**fields: Any) -> Token:
    """Start a fresh context (a request, a run) holding `fields`; `close_context` ends it."""
    return _context.set({k: v for k, v in fields.items() if v is not None})


def close_context(token: Token) -> None:
    """End the context `open_context` started."""
    _context.reset(token)


def bind(**fields: Any) -> None:
    """Add `fields` (None values skipped) to the current context, starting one if needed."""
    fields = {k: v for k, v in fields.items() if v is not None}
    current = _context.get()
    if current is None:
        _context.set(fields)
    else:
        current.update(fields)


def current_context() -> dict[str, Any]:
    """The current context's fields (a copy)."""
    return dict(_context.get() or {})


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The context and the record's own data, the data winning."""
    return {**current_context(), **(getattr(record, "data", None) or {})}


class JsonFormatter(logging.Formatter):
    """A record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        """The record's fields, its context and data, and any traceback, as one JSON line."""
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        # json.dumps escapes newlines inside strings: a traceback stays on its line.
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """A record as a line a person reads: time, level, logger, message, then key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The classic line, followed by the context and data as key=value pairs."""
        line = super().format(record)
        pairs = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        if not pairs:
            return line
        head, newline, rest = line.partition("\n")  # keep a traceback below the pairs
        return f"{head} {pairs}{newline}{rest}"


class ConsoleHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record arrives (test capture, a redirect)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        """Write the record to the standard error of this moment."""
        self.stream = sys.stderr
        super().emit(record)


def _is_console(handler: logging.Handler) -> bool:
    """A handler printing to standard error or output (ours, basicConfig's, Prefect's)."""
    if not isinstance(handler, logging.StreamHandler) or isinstance(handler, logging.FileHandler):
        return False
    consoles = (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)
    return any(handler.stream is console for console in consoles)


def configure_logging(
    fmt: str,
    level: str,
    adopt: Iterable[str] = (),
    mute: Iterable[str] = (),
    quiet: Iterable[str] = (),
) -> Callable[[], None]:
    """Every record at `level` or above as `fmt` ("json" or "text") on standard error,
    through one root handler. Loggers in `adopt` drop their own handlers and level and
    propagate to it; loggers in `mute` are turned off, those in `quiet` keep only
    warnings and worse. Returns the function that undoes it all."""
    adopt, mute, quiet = list(adopt), list(mute), list(quiet)
    root = logging.getLogger()
    touched = [root, *map(logging.getLogger, adopt + mute + quiet)]
    saved = [(lg, list(lg.handlers), lg.level, lg.propagate, lg.disabled) for lg in touched]
    handler = ConsoleHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    # A second console handler on the root would print every record again, in another
    # shape; other handlers (files, test capture) are left alone.
    for old in [h for h in root.handlers if _is_console(h)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in adopt:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.setLevel(logging.NOTSET)  # the root's level decides, whoever set this one
        logger.propagate = True
    for name in mute:
        logging.getLogger(name).disabled = True
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)

    def restore() -> None:
        for logger, handlers, lvl, propagate, disabled in saved:
            logger.handlers[:] = handlers
            logger.setLevel(lvl)
            logger.propagate, logger.disabled = propagate, disabled

    return restore


def finished_export(job: Job | None) -> Job | None:
    """Log the record of an export that just ended, from its updated row, and return the
    row; None (the update found no active job of that attempt) logs nothing."""
    if job is None:
        return None
    duration_ms = None
    if job.started_at is not None and job.finished_at is not None:
        duration_ms = round((job.finished_at - job.started_at).total_seconds() * 1000)
    data = {
        "jobId": str(job.id),
        "userId": job.user_id,
        "module": job.module,
        "format": job.format,
        "strategy": job.strategy,
        "status": job.status,
        "rowCount": job.processed_rows,
        "durationMs": duration_ms,  # from the first claim to the end; None if never started
        "bytes": job.file_bytes,
        "errorCode": job.error_code,
    }
    level = logging.WARNING if job.status == "failed" else logging.INFO
    EXPORTS.log(
        level,
        "export %s %s: %s rows, %s bytes in %s ms",
        job.id,
        job.status,
        job.processed_rows,
        job.file_bytes,
        duration_ms,
        extra={"data": data},
    )
    return job
