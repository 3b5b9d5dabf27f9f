"""One attempt at a background job, as its flow run sees it: every update fenced by the
attempt, and whatever a job leaves in storage removed when it ends other than completed."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from flows.control.errors import ExportflowError, StorageError, StorageUnavailable, Superseded
from flows.control.jobs import ACTIVE, Job
from flows.datapath.engine import ExportResult
from flows.orchestration.checkpoint import (
    Checkpoint,
    ChunkFiles,
    job_file_prefix,
    job_temp_prefix,
    plan_fingerprint,
)
from flows.orchestration.runtime import Runtime

log = logging.getLogger(__name__)

INTERNAL_MESSAGE = "the export failed because of an internal error; operators have the details"


def remove_job_files(rt: Runtime, job_id: str) -> None:
    """Delete a job's chunk files and any finished file: for a job that did not complete."""
    rt.storage.delete_prefix(job_temp_prefix(job_id))
    rt.storage.delete_prefix(job_file_prefix(job_id))


def end_job(rt: Runtime, job_id: str, status: str, code: str, message: str, attempt=None) -> bool:
    """End an active job (fenced by `attempt` when given) and remove its files; False, and
    nothing removed, when the job had already ended or belongs to another attempt."""
    if rt.jobs.finish(job_id, status, code, message, attempt) is None:
        return False
    try:
        remove_job_files(rt, job_id)
    except (StorageError, StorageUnavailable) as exc:
        # The job has ended either way (its status is the user's answer); the cleanup
        # flow removes a job's leftover chunk files once storage answers again.
        log.warning("job %s ended %s; its files stay until cleanup: %s", job_id, status, exc)
    return True


class JobRun:
    """Attempt `attempt` of job `job_id`; a lost fence raises Superseded."""

    def __init__(self, rt: Runtime, job: Job, attempt: int) -> None:
        self.rt, self.job, self.attempt = rt, job, attempt
        self.job_id = str(job.id)
        self.plan = rt.plan(job)
        self.fingerprint = plan_fingerprint(self.plan, rt.settings)
        self.files = ChunkFiles(rt.storage, self.job_id, self.fingerprint)

    def claim(self, flow_run_id: str | None) -> None:
        """Mark the job processing by this run."""
        job = self.rt.jobs.claim(self.job_id, self.attempt, flow_run_id)
        if job is None:
            raise Superseded(f"attempt {self.attempt} of job {self.job_id} no longer owns it")
        self.job = job

    def checkpoint(self) -> Checkpoint:
        """Where to resume: the stored checkpoint if it was written under the same plan."""
        checkpoint = Checkpoint.load(self.job.checkpoint, self.fingerprint)
        checkpoint.keep_existing(self.files)
        return checkpoint

    def check_loaded(self) -> None:
        """Raise Superseded unless the job row just read still belongs to this attempt."""
        if self.job.attempt != self.attempt or self.job.status not in ACTIVE:
            raise Superseded(f"attempt {self.attempt} of job {self.job_id} was superseded")

    def ensure_owner(self) -> None:
        """Raise Superseded unless this attempt still owns the active job."""
        if not self.rt.jobs.owns(self.job_id, self.attempt):
            raise Superseded(f"attempt {self.attempt} of job {self.job_id} was superseded")

    def record(self, checkpoint: Checkpoint) -> None:
        """Rows done and the checkpoint, fenced."""
        if not self.rt.jobs.progress(
            self.job_id, self.attempt, checkpoint.rows, checkpoint.to_dict()
        ):
            raise Superseded(f"attempt {self.attempt} of job {self.job_id} was superseded")

    def set_total(self, total: int) -> None:
        """The count arrived."""
        self.rt.jobs.set_total(self.job_id, self.attempt, total)

    def complete(self, key: str, result: ExportResult) -> bool:
        """Record the committed file; if the job ended meanwhile (cancelled, failed), the
        file is removed so that it never outlives its job. False unless recorded."""
        expires = datetime.now(UTC) + timedelta(seconds=self.rt.settings.link_expiry_seconds)
        file = (key, result.bytes, result.sha256)
        if self.rt.jobs.complete(self.job_id, self.attempt, result.rows, file, expires):
            self.rt.storage.delete_prefix(job_temp_prefix(self.job_id))
            return True
        now = self.rt.jobs.get(self.job_id)
        if now is not None and now.status not in ("pending", "processing", "completed"):
            # Still active means a newer attempt owns the job and writes this same key.
            self.rt.storage.delete(key)
        return False

    def fail(self, exc: BaseException, cancelled: bool = False) -> bool:
        """End the job for an error, with its code and public message; False if not ended."""
        # Internals go to the log; False: the job had ended or belongs to another attempt.
        if cancelled:
            return end_job(self.rt, self.job_id, "cancelled", "cancelled",
                           "cancelled by request", self.attempt)  # fmt: skip
        if isinstance(exc, ExportflowError):
            code, message = exc.code, exc.message
            if exc.detail:
                log.warning("job %s failed with %s: %s", self.job_id, code, exc.detail)
        else:
            code, message = "internal", INTERNAL_MESSAGE
            log.error("job %s failed", self.job_id, exc_info=exc)
        return end_job(self.rt, self.job_id, "failed", code, message, self.attempt)
