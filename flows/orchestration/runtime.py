"""What a flow-run process needs once: settings, database URLs, registry, storage, jobs.

It does not migrate: `exportflow up`, `exportflow migrate` and `serve` do, before any
run starts, so a flow-run process only reads the catalog."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import cached_property, lru_cache

from flows.control.database import database_url
from flows.control.jobs import Job, JobStore
from flows.control.permissions import PermissionStore
from flows.control.registry import Registry, load_checked_registry
from flows.control.schedules import ScheduleStore
from flows.control.settings import Settings, get_settings
from flows.control.storage import Storage
from flows.datapath.request import ExportPlan, ExportRequest, plan_export


@dataclass(frozen=True)
class Runtime:
    """The process-wide context, built on first use."""

    settings: Settings
    url: str
    registry: Registry
    storage: Storage
    jobs: JobStore

    @property
    def source_url(self) -> str:
        """Where rows are read: the read replica when one is configured."""
        return self.settings.read_database_url or self.url

    @cached_property
    def schedules(self) -> ScheduleStore:
        """The scheduled exports."""
        return ScheduleStore(self.url)

    @cached_property
    def permissions(self) -> PermissionStore:
        """Each user's permissions as last seen (kept: it remembers its last writes)."""
        return PermissionStore(self.url)

    def plan(self, job: Job) -> ExportPlan:
        """The job's stored request, planned again against the registry."""
        request = ExportRequest.model_validate(job.options)
        return plan_export(request, self.registry, self.settings)


@lru_cache
def runtime() -> Runtime:
    """The context for this process (settings from the environment)."""
    settings = get_settings()
    if os.environ.get("PREFECT__FLOW_RUN_ID"):
        # A process of this run alone (a runner or worker started it): on a busy host the
        # API's answers and the imports of runs just starting go first, so status polls
        # stay quick and a queued export starts soon after a slot frees. Alone on the host
        # the run is as fast as before: a niced process still gets any idle CPU.
        os.nice(settings.export_niceness)
    # Prefect hands records of the `exportflow` loggers to its handlers (the run's log in
    # the UI) when PREFECT_LOGGING_EXTRA_LOGGERS names them; their level is ours to set,
    # or the root's WARNING drops each finished export's record.
    logging.getLogger("exportflow").setLevel(settings.log_level)
    url = database_url(settings)
    # The catalog that matters is the one rows are read from.
    registry = load_checked_registry(settings.datasets, settings.read_database_url or url)
    return Runtime(settings, url, registry, Storage.from_settings(settings), JobStore(url))
