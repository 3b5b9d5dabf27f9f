"""`exportflow up` failing clearly: a taken port, a part that does not come up."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import psutil
import pytest

from flows.control.errors import StackError
from flows.tools.stack_process import Child


def run_up(env: dict[str, str]) -> subprocess.CompletedProcess:
    """`exportflow up` that is expected to refuse to start."""
    argv = [sys.executable, "-m", "flows.tools.cli", "up"]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)


def test_up_refuses_a_taken_port_and_names_the_part(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTFLOW_")}
        env.update(
            EXPORTFLOW_ENV="development",
            EXPORTFLOW_DATA_DIR=str(tmp_path),
            EXPORTFLOW_PREFECT_PORT=str(port),
        )
        done = run_up(env)
    assert done.returncode == 2
    assert f"127.0.0.1:{port} for the Prefect server is in use" in done.stderr
    assert "EXPORTFLOW_PREFECT_PORT" in done.stderr
    assert not (tmp_path / "pg").exists()  # nothing was started


def test_up_refuses_the_default_secret_outside_development(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTFLOW_")}
    env.update(EXPORTFLOW_DATA_DIR=str(tmp_path))
    done = run_up(env)
    assert done.returncode == 2
    assert "error [config_error]: EXPORTFLOW_SECRET_KEY is the default" in done.stderr
    assert not (tmp_path / "pg").exists()  # nothing was started


def test_a_part_that_exits_while_starting_is_named_with_its_log(tmp_path):
    code = "import sys; print('cannot bind the port'); sys.exit(3)"
    child = Child(
        "serve",
        [sys.executable, "-c", code],
        dict(os.environ),
        tmp_path / "serve.log",
        lambda: False,
    )
    child.start()
    with pytest.raises(StackError, match="serve exited with status 3 while starting") as info:
        child.wait_ready(timeout=30)
    assert info.value.child is child and "cannot bind the port" in child.tail()


def test_a_part_that_never_answers_times_out_and_is_killed_with_its_children(tmp_path):
    # Ignores SIGTERM, like a runner busy shutting down, and has a child of its own.
    code = (
        "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']);"
        "print('starting', flush=True); time.sleep(600)"
    )
    child = Child(
        "api", [sys.executable, "-c", code], dict(os.environ), tmp_path / "api.log", lambda: False
    )
    child.start()
    with pytest.raises(StackError, match="api did not answer its health check within 2 s"):
        child.wait_ready(timeout=2)
    family = [psutil.Process(child.pid), *psutil.Process(child.pid).children(recursive=True)]
    assert len(family) == 2
    said = []
    child.stop(timeout=1, say=said.append)
    assert said[0] == "api did not stop within 1 s: killing it"
    _, alive = psutil.wait_procs(family, timeout=5)
    assert not alive
