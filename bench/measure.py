"""Run one command as a subprocess; measure its wall time and the peak RSS of its process tree."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass

import psutil

POLL_SECONDS = 0.02


@dataclass(frozen=True)
class Measurement:
    """One run: wall seconds and peak RSS (bytes), or the error that stopped it."""

    seconds: float
    peak_rss: int
    error: str | None = None


def _tree_rss(proc: psutil.Process) -> int:
    """RSS of a process and all its descendants, summed; 0 once it is gone."""
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total


def _error_line(text: str) -> str:
    """The most telling line of a failed run's stderr: the last that names an error."""
    lines = [ln.strip() for ln in text.replace("\r", "\n").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower() or "exception" in ln.lower()]
    return (errors or lines or [""])[-1][:160]


def run_measured(
    cmd: list[str], env: dict[str, str] | None = None, timeout: float = 900.0
) -> Measurement:
    """Run `cmd`, polling the RSS of its process tree every ~20 ms.

    getrusage/wait4 ru_maxrss is not used: a child forked from this (large) process inherits
    this process's high-water mark, which would inflate small tools such as psql.
    """
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        popen = subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
        )
        proc = psutil.Process(popen.pid)
        peak, status = 0, None
        while status is None:
            peak = max(peak, _tree_rss(proc))
            pid, wstatus = os.waitpid(popen.pid, os.WNOHANG)
            if pid:
                status = os.waitstatus_to_exitcode(wstatus)
                break
            if time.perf_counter() - started > timeout:
                os.killpg(popen.pid, signal.SIGKILL)
                os.waitpid(popen.pid, 0)
                popen.returncode = -9
                return Measurement(timeout, peak, f"timeout after {timeout:.0f} s")
            time.sleep(POLL_SECONDS)
        seconds = time.perf_counter() - started
        popen.returncode = status
        if status != 0:
            err.seek(0)
            message = _error_line(err.read().decode("utf-8", "replace"))
            return Measurement(seconds, peak, message or f"exit status {status}")
        return Measurement(seconds, peak)
