"""One child process of `exportflow up`: own session, own log, health check, stop then kill."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from flows.control.errors import StackError


class Child:
    """A process the stack started: its command, environment, log file and health check."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        log: Path,
        ready: Callable[[], bool],
    ) -> None:
        self.name, self.argv, self.env, self.log, self.ready = name, argv, env, log, ready
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        """Start it in its own session (a Ctrl-C at the terminal reaches only `up`)."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int | None:
        """Its process id, once started."""
        return self.proc.pid if self.proc else None

    def exit_code(self) -> int | None:
        """None while it runs."""
        return self.proc.poll() if self.proc else None

    def wait_ready(self, timeout: float) -> float:
        """Poll the health check until it passes; seconds it took. Raises StackError."""
        started = time.monotonic()
        while True:
            code = self.exit_code()
            if code is not None:
                raise StackError(f"{self.name} exited with status {code} while starting", self)
            try:
                if self.ready():
                    return time.monotonic() - started
            except Exception:
                pass  # not answering yet
            if time.monotonic() - started > timeout:
                raise StackError(
                    f"{self.name} did not answer its health check within {timeout:.0f} s", self
                )
            time.sleep(0.5)

    def tail(self, lines: int = 40) -> str:
        """The end of its log."""
        try:
            text = self.log.read_bytes()[-32_768:].decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float, say: Callable[[str], None] = print) -> None:
        """SIGTERM, wait up to `timeout`, then SIGKILL it and everything it started."""
        if self.proc is None:
            return
        family = descendants(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                say(f"{self.name} did not stop within {timeout:.0f} s: killing it")
                _kill_group(self.proc.pid)
                self.proc.wait()
        # Its children (flow-run processes) get a moment to follow, then are killed.
        leftovers = [p for p in family + session_members(self.proc.pid) if _alive(p)]
        _, alive = psutil.wait_procs(leftovers, timeout=min(timeout, 5))
        for p in alive:
            say(f"killing {p.pid} left behind by {self.name}")
            _kill(p)
        psutil.wait_procs(alive, timeout=5)


def descendants(pid: int) -> list[psutil.Process]:
    """Every process below `pid` now."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def session_members(sid: int) -> list[psutil.Process]:
    """Processes still in the session `sid` (the child's own, from start_new_session)."""
    members = []
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == sid:
                members.append(p)
        except (OSError, psutil.Error):
            continue
    return members


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _kill(p: psutil.Process) -> None:
    with contextlib.suppress(psutil.Error):
        p.kill()


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
