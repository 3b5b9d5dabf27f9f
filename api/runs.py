"""Flow runs through the Prefect client: read a run's state, cancel a job's run, health."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator

import anyio
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.objects import State
from prefect.context import SettingsContext
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelled, Cancelling

from api.errors import PrefectUnavailable

log = logging.getLogger("api")

# A poll must answer quickly even when Prefect is down: the row's status is then reported.
READ_TIMEOUT_SECONDS = 3.0
WRITE_TIMEOUT_SECONDS = 10.0
CANCEL_MESSAGE = "cancelled by request"
STATES_KEPT = 10_000
# A cached state past cache_seconds is still answered, and a newer one read behind it,
# until it is this many times as old; older, the poll waits for Prefect.
STALE_FACTOR = 10


class Orchestrator:
    """The Prefect API the app was created under."""

    # Prefect's settings live in a context variable; request handlers run in tasks and
    # threads that do not inherit the context the app was created in, so it is captured
    # here and entered for every call. Without an API URL the client would start a
    # temporary server inside this process: the API never does that, it reports Prefect
    # as not configured instead.

    def __init__(self, context: SettingsContext | None = None, cache_seconds: float = 0) -> None:
        self.context = context or SettingsContext.get()
        self._kept: PrefectClient | None = None
        # Clients poll a running export several times a second; its run's state changes
        # a handful of times in its life, while its progress comes from the row each time.
        self.cache_seconds = cache_seconds
        self._states: dict[uuid.UUID, tuple[float, State | None]] = {}
        self._refreshing: dict[uuid.UUID, asyncio.Task] = {}

    @contextlib.asynccontextmanager
    async def kept_open(self) -> AsyncIterator[None]:
        """One client for the app's life, on the app's event loop."""
        # A new client per call builds a TLS context (~30 ms of CPU, on the event loop,
        # even for an http URL) and a new connection: status polls waited behind it.
        if not self.url:
            yield
            return
        with SettingsContext(profile=self.context.profile, settings=self.context.settings):
            async with get_client() as client:
                self._kept = client
                try:
                    yield
                finally:
                    self._kept = None

    @property
    def url(self) -> str | None:
        """The Prefect API URL, None when none is configured."""
        return self.context.settings.api.url

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[PrefectClient]:
        """A client for the captured settings."""
        if not self.url:
            raise PrefectUnavailable("no Prefect API is configured", detail="PREFECT_API_URL")
        with SettingsContext(profile=self.context.profile, settings=self.context.settings):
            if self._kept is not None:
                yield self._kept
                return
            async with get_client() as client:
                yield client

    async def healthcheck(self) -> None:
        """Raises when the Prefect API does not answer its health check."""
        async with self.client() as client:
            failure = await client.api_healthcheck()
        if failure is not None:
            raise failure

    async def read_state(self, flow_run_id: uuid.UUID) -> State | None:
        """The run's state, at most cache_seconds old, or up to STALE_FACTOR times that
        while a newer one is read behind the answer; None when Prefect does not know the
        run or cannot be reached."""
        seen = self._states.get(flow_run_id)
        if seen is not None and self.cache_seconds > 0:
            age = time.monotonic() - seen[0]
            if age < self.cache_seconds:
                return seen[1]
            if age < self.cache_seconds * STALE_FACTOR:
                # Under load Prefect's answer took up to ~100 ms: polls do not wait for it.
                self._refresh_behind(flow_run_id)
                return seen[1]
        return await self._refresh(flow_run_id)

    async def _refresh(self, flow_run_id: uuid.UUID) -> State | None:
        now = time.monotonic()
        state = await self._read_state(flow_run_id)
        if self.cache_seconds > 0:
            if len(self._states) >= STATES_KEPT:
                self._states.clear()  # many runs polled at once: start again, stay bounded
            self._states[flow_run_id] = (now, state)
        return state

    def _refresh_behind(self, flow_run_id: uuid.UUID) -> None:
        """Read the run's state on a task of its own, once at a time per run."""
        if flow_run_id in self._refreshing:
            return
        task = asyncio.get_running_loop().create_task(self._refresh(flow_run_id))
        self._refreshing[flow_run_id] = task  # held until done: the loop keeps weak refs
        task.add_done_callback(lambda t: self._refreshed(flow_run_id, t))

    def _refreshed(self, flow_run_id: uuid.UUID, task: asyncio.Task) -> None:
        if self._refreshing.get(flow_run_id) is task:  # not a later read that replaced it
            del self._refreshing[flow_run_id]

    def _forget(self, flow_run_id: uuid.UUID) -> None:
        """Drop the run's cached state and stop a read of it still under way, which began
        before the change that makes it stale and must not be cached after it."""
        self._states.pop(flow_run_id, None)
        running = self._refreshing.pop(flow_run_id, None)
        if running is not None:
            running.cancel()

    async def _read_state(self, flow_run_id: uuid.UUID) -> State | None:
        try:
            with anyio.fail_after(READ_TIMEOUT_SECONDS):
                async with self.client() as client:
                    return (await client.read_flow_run(flow_run_id)).state
        except ObjectNotFound:
            return None
        except Exception as exc:  # a status poll never fails for Prefect's sake
            log.warning("could not read flow run %s: %r", flow_run_id, exc)
            return None

    async def cancel_run(self, flow_run_id: uuid.UUID) -> bool:
        """Cancel the run; True when it is Cancelling and its flow's hook will end the job."""
        # False (never started, already ended, unknown): the caller ends the job itself.
        self._forget(flow_run_id)  # the next poll sees the cancellation
        try:
            with anyio.fail_after(WRITE_TIMEOUT_SECONDS):
                async with self.client() as client:
                    return await _cancel(client, flow_run_id)
        except Exception as exc:
            raise PrefectUnavailable(
                "the run could not be cancelled", detail=f"flow run {flow_run_id}: {exc!r}"
            ) from exc


async def _cancel(client: PrefectClient, flow_run_id: uuid.UUID) -> bool:
    try:
        state = (await client.read_flow_run(flow_run_id)).state
    except ObjectNotFound:
        return False
    if state is None or state.is_final():
        return False
    if state.is_scheduled():
        # No process yet, so no hook would run: the run ends here. (A run left Cancelled
        # with its job active is ended by the reconciler.)
        cancelled = Cancelled(message=CANCEL_MESSAGE)
        await client.set_flow_run_state(flow_run_id, cancelled, force=True)
        return False
    await client.set_flow_run_state(flow_run_id, Cancelling(message=CANCEL_MESSAGE), force=True)
    return True
