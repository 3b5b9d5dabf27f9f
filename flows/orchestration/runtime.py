"""What a flow or API process needs once: settings, database URL, registry, storage, jobs."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from flows.control.bootstrap import bootstrap
from flows.control.jobs import Job, JobStore
from flows.control.registry import Registry
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

    def plan(self, job: Job) -> ExportPlan:
        """The job's stored request, planned again against the registry."""
        request = ExportRequest.model_validate(job.options)
        return plan_export(request, self.registry, self.settings)


@lru_cache
def runtime() -> Runtime:
    """The context for this process (settings from the environment)."""
    settings = get_settings()
    url, registry = bootstrap(settings)
    return Runtime(settings, url, registry, Storage.from_settings(settings), JobStore(url))
