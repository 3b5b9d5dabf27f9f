"""Loaded by `make mutation` only (`-p tests.mutation_plugin`), where every mutant runs
its tests in a fresh pytest session, so each session that needs the database creates
one and drops it at the end.

- Tests that need no database run first, and the quickest first (by the durations
  mutmut measured): with `-x` a mutant they catch is done before any database is
  created.
- A test parametrised to run against the S3 server (a parameter value "s3") is marked
  `s3` like those that name the server's fixture, so that `-m "not s3"` leaves them out:
  each session would start its own server.
- A mutant whose tests run too long gets SIGXCPU; dying from it on the spot would skip
  the session's teardown and leave its database behind. Here the signal interrupts the
  session instead, the fixtures are torn down (the database dropped), and the process
  then ends with the exit code mutmut reads as a timeout."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

# What mutmut counts as a timeout (SIGXCPU's number).
TIMEOUT_EXIT_CODE = 24
_timed_out = False


def _interrupt(signum: int, frame: object) -> None:
    global _timed_out
    _timed_out = True
    # One interruption: a second signal must not break the teardown it started. The CPU
    # limit's hard bound still kills a teardown that spins.
    signal.signal(signal.SIGXCPU, signal.SIG_IGN)
    raise KeyboardInterrupt


def pytest_configure(config: pytest.Config) -> None:
    signal.signal(signal.SIGXCPU, _interrupt)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "s3" in callspec.params.values():
            item.add_marker(pytest.mark.s3)
    durations = _measured_durations()
    items.sort(
        key=lambda item: (
            "db_url" in getattr(item, "fixturenames", ()),
            durations.get(item.nodeid, 0.0),
        )
    )


def _measured_durations() -> dict[str, float]:
    """Each test's duration in mutmut's first, clean run (none before it)."""
    try:
        return json.loads(Path("mutmut-stats.json").read_text())["duration_by_test"]
    except (OSError, ValueError, KeyError):
        return {}


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    if _timed_out:
        os._exit(TIMEOUT_EXIT_CODE)
    signal.signal(signal.SIGXCPU, signal.SIG_DFL)
