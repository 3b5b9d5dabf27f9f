"""What `exportflow up` gives its children."""

from __future__ import annotations

from flows.control.settings import Settings
from flows.tools.stack import child_env, children

SLOT_WAIT = "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS"


def _server_env(tmp_path, monkeypatch, **environ) -> dict[str, str]:
    monkeypatch.delenv(SLOT_WAIT, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None, data_dir=tmp_path)
    env = child_env(settings, "postgresql://postgres@127.0.0.1/x", tmp_path)
    parts = {c.name: c for c in children(settings, env, tmp_path, "sqlite+aiosqlite:///p.db")}
    return parts["prefect-server"].env


def test_a_run_waiting_for_an_export_slot_retries_every_second(tmp_path, monkeypatch):
    env = _server_env(tmp_path, monkeypatch)
    assert env[SLOT_WAIT] == "1"
    assert env["PREFECT_API_DATABASE_CONNECTION_URL"] == "sqlite+aiosqlite:///p.db"


def test_an_operator_setting_for_the_slot_wait_is_kept(tmp_path, monkeypatch):
    assert _server_env(tmp_path, monkeypatch, **{SLOT_WAIT: "5"})[SLOT_WAIT] == "5"
