"""The three ways an export is delivered: direct (one response), stream, background.

Direct and stream run in the API process, but leave their row in export_jobs like a
background job: claimed when the rows start, completed with rows, bytes and sha256 (no
file is kept) or failed with the error's code."""

from __future__ import annotations

import contextvars
import io
import logging
import queue
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from anyio import to_thread

from api.deps import Services
from flows.control.errors import ExportflowError, SourceTimeout
from flows.control.jobs import Job
from flows.datapath.access import Caller
from flows.datapath.deadline import Deadline
from flows.datapath.engine import ExportResult, count_rows, export
from flows.datapath.notify import check_notify
from flows.datapath.request import ExportPlan, ExportRequest, plan_export
from flows.datapath.writers import file_extension
from flows.orchestration.submit import submit_background

log = logging.getLogger("api")

END = object()  # the producer is done and every chunk was taken
GONE = "the client disconnected before the file was sent"
QUEUE_CHUNKS = 8  # chunks written ahead of the client; the engine waits beyond this
NARROW = "narrow the export with a filter, a date range or selected ids"


async def plan_and_count(
    services: Services, req: ExportRequest, caller: Caller
) -> tuple[ExportPlan, int]:
    """The engine's plan for `req` (its 4xx errors) and the rows it selects."""
    req = req.model_copy(update={"notify": check_notify(req.notify, services.settings, caller)})
    plan = plan_export(req, services.rt.registry, services.settings, caller)
    # The client waits for the count whatever the strategy: it gets the direct limit.
    limit = services.settings.direct_timeout_seconds
    counting = Deadline.after(limit, f"counting the rows took longer than {limit:g} s; {NARROW}")
    total = await to_thread.run_sync(count_rows, services.rt.source_url, plan, counting)
    return plan, total


def choose(total: int, background: bool, services: Services) -> str:
    """The strategy for `total` rows (background when asked for or past the stream limit)."""
    settings = services.settings
    if background or total > settings.stream_max_rows:
        return "background"
    return "direct" if total <= settings.direct_max_rows else "stream"


def attachment_name(module: str, plan: ExportPlan) -> str:
    """`<module>-export-<UTC yyyymmddTHHMMSSZ>.<ext>`, stamped now."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{module}-export-{stamp}.{file_extension(plan.request)}"


def deadline(seconds: float, strategy: str) -> Deadline:
    """The time limit of a direct or streamed export, starting now."""
    return Deadline.after(
        seconds,
        f"the export took longer than the {seconds:g} s a {strategy} export may take;"
        ' export fewer rows or ask for a background export ("mode": "background")',
    )


def _run(services: Services, plan: ExportPlan, job: Job, sink, limit: Deadline) -> ExportResult:
    """Export into `sink` within `limit` and record the outcome on the job row."""
    jobs = services.jobs
    jobs.claim(job.id, job.attempt, None)
    try:
        result = export(services.rt.source_url, plan, sink, services.settings, deadline=limit)
    except BaseException as exc:
        code, message = _failure(exc, sink)
        jobs.finish(job.id, "failed", code, message, job.attempt)
        raise
    file = (None, result.bytes, result.sha256)  # nothing is stored: no key, no expiry
    jobs.complete(job.id, job.attempt, result.rows, file, None)
    return result


def _failure(exc: BaseException, sink) -> tuple[str, str]:
    """The code and message a failed export leaves on its row."""
    # The writer may wrap the sink's Stopped in its own error: the stop is what happened.
    if isinstance(sink, Pipe) and sink.stopped.is_set():
        return Stopped.code, GONE
    if isinstance(sink, Pipe) and sink.timed_out is not None:
        exc = sink.timed_out
    if isinstance(exc, ExportflowError):
        return exc.code, exc.message
    return "internal", f"the export stopped: {type(exc).__name__}"


def run_direct(services: Services, plan: ExportPlan, job: Job) -> bytes:
    """The whole file in memory (the row count bounds its size), within the direct limit."""
    buf = io.BytesIO()
    _run(services, plan, job, buf, deadline(services.settings.direct_timeout_seconds, "direct"))
    return buf.getvalue()


class Stopped(ExportflowError):
    """The client went away: the engine stops at its next write."""

    code = "client_disconnected"


class Pipe:
    """A bounded queue from the engine's thread to the response; either side may stop it."""

    def __init__(self, limit: Deadline) -> None:
        self.queue: queue.Queue = queue.Queue(QUEUE_CHUNKS)
        self.stopped = threading.Event()
        self.limit = limit
        self.timed_out: SourceTimeout | None = None
        self.error: BaseException | None = None
        self.finished = threading.Event()

    def write(self, data: bytes) -> int:
        """Called by the engine: waits for room; Stopped once the client left."""
        if data:
            self.put(bytes(data))
        return len(data)

    def put(self, item: object) -> None:
        """Queue `item`, checking for a stop and the deadline while the queue is full."""
        while not self.stopped.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                # A client too slow to take the file in time ends the export too.
                if self.limit.expired():
                    # Kept: the writer may wrap it, and the row must still say timeout.
                    self.timed_out = self.limit.error()
                    raise self.timed_out from None
        raise Stopped(GONE)

    def fail(self, exc: BaseException) -> None:
        """The producer's error, for the response to raise ahead of any queued chunk."""
        self.error = exc

    def finish(self) -> None:
        """Every chunk is queued: the response drains them at the client's pace."""
        # Not through the queue: the engine's thread ends now, and the deadline, which
        # bounds the export rather than the download, cannot cut a finished one.
        self.finished.set()

    def get(self) -> object:
        """The next chunk, END or the producer's error; END once stopped."""
        while not self.stopped.is_set():
            if self.error is not None:
                return self.error
            # Read before the queue: finished and empty then means no chunk is left.
            finished = self.finished.is_set()
            try:
                return self.queue.get(block=not finished, timeout=0.1)
            except queue.Empty:
                if finished:
                    return END
        return END


def _produce(services: Services, plan: ExportPlan, job: Job, pipe: Pipe) -> None:
    """The worker thread: the engine writes into the pipe; the outcome goes on the row."""
    try:
        _run(services, plan, job, pipe, pipe.limit)
        pipe.finish()
    except BaseException as exc:
        if pipe.stopped.is_set():
            return  # the client left; _run recorded it on the row
        log.warning("streamed export %s failed: %r", job.id, exc)
        # Not queued: a client too slow to empty the queue must still be cut off.
        pipe.fail(exc)


async def stream_body(services: Services, plan: ExportPlan, job: Job) -> AsyncIterator[bytes]:
    """The file's bytes as the engine writes them; closing early stops the database reads."""
    pipe = Pipe(deadline(services.settings.stream_timeout_seconds, "streamed"))
    # In the request's context, so the export's log records carry its request id.
    worker = threading.Thread(
        target=contextvars.copy_context().run,
        args=(_produce, services, plan, job, pipe),
        name=f"stream-{job.id}",
        daemon=True,
    )
    worker.start()
    try:
        while True:
            item = await to_thread.run_sync(pipe.get, abandon_on_cancel=True)
            if item is END:
                return
            if isinstance(item, BaseException):
                # The headers are out: failing here cuts the connection, so the client
                # sees a broken transfer rather than a short file that looks complete.
                raise RuntimeError(f"export {job.id} failed while streaming") from item
            yield item
    finally:
        # A client that disconnects (or any early close) lands here: the engine's next
        # write raises Stopped, which closes its reads and marks the row failed.
        pipe.stopped.set()


def submit(services: Services, job: Job, total: int) -> None:
    """Record the count and hand the job to Prefect (the reconciler retries a failure)."""
    submit_background(services.jobs, job, total)
