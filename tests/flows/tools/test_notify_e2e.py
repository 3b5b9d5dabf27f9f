"""A background export asked through the API with notify, run as a worker would run it: the
email that arrives links to the file, the webhook is signed, the status shows both."""

from __future__ import annotations

import hashlib
import re
import time

import httpx
import jwt
from pydantic import SecretStr

from flows.control.notify_email import human_bytes
from flows.control.webhooks import SIGNATURE_HEADER, verify
from tests.api.conftest import JWT_SECRET, SECRET
from tests.flows.conftest import flows_runtime
from tests.flows.tools.cli_run import exportflow
from tests.flows.tools.conftest import run_as_worker, running_api, submitted

HOOK_SECRET = "whsec-e2e-0123456789"


def test_the_email_link_downloads_the_file_and_the_webhook_is_signed(
    api_app_factory, settings, registry, flows_env, smtp_server, webhook_receiver, ca_file
):
    smtp_port, inbox = smtp_server
    notify_settings = {
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_port,
        "smtp_security": "none",
        "webhook_allowed_hosts": ["localhost"],
        "webhook_allow_private_addresses": True,
        "webhook_secret": SecretStr(HOOK_SECRET),
        "notify_ca_file": ca_file,
    }
    user = f"notify-user-{time.monotonic_ns()}"
    now = int(time.time())
    claims = {"sub": user, "permissions": ["products:read"], "email": "ann@example.com",
              "iat": now, "exp": now + 600}  # fmt: skip
    headers = {"Authorization": f"Bearer {jwt.encode(claims, JWT_SECRET, algorithm='HS256')}"}
    body = {"notify": {"email": True, "webhook": webhook_receiver.url()}}
    with running_api(api_app_factory, settings, registry, **notify_settings) as api:
        server, rt = api.server, api.rt
        resp = httpx.post(f"{server.url}/api/products/export", json=body, headers=headers)
        assert resp.status_code == 202, resp.text
        job = submitted(api, user)
        env = {
            "EXPORTFLOW_SECRET_KEY": SECRET,
            "EXPORTFLOW_PUBLIC_API_URL": server.url,
            "EXPORTFLOW_SMTP_HOST": "127.0.0.1",
            "EXPORTFLOW_SMTP_PORT": str(smtp_port),
            "EXPORTFLOW_SMTP_SECURITY": "none",
            "EXPORTFLOW_WEBHOOK_ALLOWED_HOSTS": '["localhost"]',
            "EXPORTFLOW_WEBHOOK_ALLOW_PRIVATE_ADDRESSES": "true",
            "EXPORTFLOW_WEBHOOK_SECRET": HOOK_SECRET,
            "EXPORTFLOW_NOTIFY_CA_FILE": str(ca_file),
        }
        with flows_runtime(**env):
            run_as_worker(job)
        done = rt.jobs.get(job.id)
        [mail] = inbox.messages
        assert inbox.envelopes == [("exportflow@localhost", ["ann@example.com"])]
        assert mail["Subject"] == "Your products export (CSV) is ready: 2,000 rows"
        text = mail.get_content()
        assert "Rows: 2,000" in text and f"Size: {human_bytes(done.file_bytes)}" in text
        until = done.expires_at.strftime("%Y-%m-%d %H:%M UTC")
        assert f"works until {until}" in text
        [link] = re.findall(r"http\S+/downloads/\S+", text)
        assert link.startswith(f"{server.url}/downloads/")
        data = httpx.get(link).raise_for_status().content
        assert hashlib.sha256(data).hexdigest() == done.sha256
        [hook] = webhook_receiver.received
        assert verify(hook.body, hook.headers[SIGNATURE_HEADER], HOOK_SECRET)
        assert hook.json()["job"]["id"] == str(job.id)
        status = httpx.get(f"{server.url}/api/exports/{job.id}", headers=headers).json()
        assert status["status"] == "completed"
        assert [(n["channel"], n["status"], n["attempts"]) for n in status["notifications"]] == [
            ("email", "delivered", 1),
            ("webhook", "delivered", 1),
        ]


def test_submit_sends_the_notify_options_and_shows_the_servers_refusal(api, as_user, user):
    hook = exportflow(as_user, "submit", "tags", "--notify-webhook", "https://evil.example/h")
    assert hook.returncode == 2
    assert hook.stderr.startswith("error [webhook_host_not_allowed]: "), hook.stderr
    mail = exportflow(as_user, "submit", "tags", "--notify-email")
    assert mail.returncode == 2
    assert mail.stderr.startswith("error [notify_email_unavailable]: "), mail.stderr
    assert api.rt.jobs.list_owned(user, 10) == []
