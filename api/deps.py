"""What handlers depend on, as `Annotated` types: the services, the settings, the caller."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import TokenVerifier
from api.runs import Orchestrator
from flows.control.jobs import JobStore
from flows.control.logs import bind
from flows.control.settings import Settings
from flows.control.storage import Storage
from flows.datapath.access import Caller
from flows.orchestration.runtime import Runtime


@dataclass
class Services:
    """What the app builds once at start-up and every request shares."""

    # The flows' own Runtime (registry, job store, storage): both sides end jobs alike.

    settings: Settings
    verifier: TokenVerifier
    rt: Runtime
    runs: Orchestrator

    @property
    def jobs(self) -> JobStore:
        """The job store."""
        return self.rt.jobs

    @property
    def storage(self) -> Storage:
        """Where the files are."""
        return self.rt.storage


def get_services(request: Request) -> Services:
    """The app's services (built by its lifespan)."""
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_settings(services: ServicesDep) -> Settings:
    """The app's settings."""
    return services.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


# auto_error off: a missing token gets our 401 shape, not FastAPI's 403.
bearer = HTTPBearer(auto_error=False, description="A JWT whose `sub` is the user.")


def current_caller(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    """The caller the bearer token names (sync: a key-set fetch must not block the loop)."""
    token = credentials.credentials if credentials is not None else None
    caller = services.verifier.caller(f"Bearer {token}" if token else None)
    bind(userId=caller.user_id)  # the request's later log records name the user
    # What a scheduled export of this user runs with later, when no token is at hand.
    services.rt.permissions.seen(caller.user_id, caller.permissions or frozenset())
    return caller


CallerDep = Annotated[Caller, Depends(current_caller)]
