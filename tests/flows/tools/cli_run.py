"""Running the `exportflow` command as a separate process, from this checkout's code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def cli_command(*args: str) -> list[str]:
    """The argv of `exportflow ARGS`."""
    return [sys.executable, "-m", "flows.tools.cli", *args]


def checkout_env(env: dict) -> dict:
    """`env` importing this checkout's `flows` from any working directory."""
    # The virtualenv's editable install may point at another checkout.
    return {**env, "PYTHONPATH": str(ROOT)}


def exportflow(env: dict, *args: str, text: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run `exportflow ARGS` to completion; stdout and stderr captured unless given."""
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **kwargs}
    return subprocess.run(
        cli_command(*args), env=checkout_env(env), text=text, timeout=120, **streams
    )
