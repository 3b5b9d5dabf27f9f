"""`exportflow token` mints what the API accepts; `up` prints one in development."""

from __future__ import annotations

import pytest

from api.auth import TokenVerifier
from flows.control.settings import Settings
from flows.tools.cli_commands import parse_ttl
from tests.flows.tools.cli_run import exportflow


def test_the_minted_token_is_accepted_with_its_user_and_permissions():
    env = {"EXPORTFLOW_ENV": "development", "PATH": "/usr/bin:/bin"}
    run = exportflow(env, "token", "--user", "ann", "--perm", "tags:read", "--ttl", "15m")
    assert run.returncode == 0, run.stderr
    settings = Settings(_env_file=None, env="development")
    caller = TokenVerifier(settings).caller(f"Bearer {run.stdout.strip()}")
    assert caller.user_id == "ann" and caller.permissions == frozenset({"tags:read"})
    claims = TokenVerifier(settings).claims(run.stdout.strip())
    assert claims["exp"] - claims["iat"] == 900


def test_no_token_from_the_default_secret_outside_development():
    run = exportflow({"PATH": "/usr/bin:/bin"}, "token", "--user", "ann")
    assert run.returncode == 2 and run.stderr.startswith("error [config_error]")
    assert run.stdout == ""


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("15m", 900), ("1h", 3600), ("2d", 172800), ("3S", 3)]
)
def test_ttl_units(text, seconds):
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "h", "5x", "1w", "1.5h"])
def test_bad_ttl_is_refused(text):
    run = exportflow(
        {"EXPORTFLOW_ENV": "development", "PATH": "/usr/bin:/bin"},
        "token",
        "--user",
        "a",
        "--ttl",
        text,
    )
    assert run.returncode == 2 and "error [invalid_request]: --ttl" in run.stderr
