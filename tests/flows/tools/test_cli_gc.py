"""The CLI's imports run without garbage collection; a caller in the process gets it back."""

from __future__ import annotations

import gc

import pytest

from flows.tools.cli import main
from flows.tools.cli_commands import loading


def test_loading_collects_nothing_then_freezes_until_the_command_returns(
    monkeypatch: pytest.MonkeyPatch,
):
    assert gc.isenabled() and gc.get_freeze_count() == 0
    with loading():
        assert not gc.isenabled()
        held = [[] for _ in range(1000)]
    assert gc.isenabled() and gc.get_freeze_count() >= len(held)
    gc.unfreeze()

    monkeypatch.setattr("flows.tools.cli_commands.cmd_db", lambda args: _loads(args))
    assert main(["db"]) == 0
    assert gc.isenabled() and gc.get_freeze_count() == 0


def _loads(args) -> int:
    with loading():
        assert not gc.isenabled()
    assert gc.get_freeze_count() > 0
    return 0
