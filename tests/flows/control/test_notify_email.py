"""The notification email over SMTP to a real server on loopback: plain, STARTTLS and
implicit TLS, and how the server's answers are classed (retry or not)."""

from __future__ import annotations

import ssl
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller

from flows.control import notify_email
from flows.control.errors import NotificationFailed, NotificationUnavailable
from flows.control.jobs import Job
from flows.control.settings import Settings
from flows.control.storage import Storage
from tests.e2e.conftest import free_port
from tests.notify_servers import Inbox


def smtp_settings(port: int, **extra) -> Settings:
    values = {"smtp_host": "localhost", "smtp_port": port, "smtp_security": "none",
              "smtp_from": "exports@example.com", "notify_timeout_seconds": 5,
              "env": "development"}  # fmt: skip
    return Settings(_env_file=None, **(values | extra))


def message(to: str = "ann@example.com") -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "exports@example.com", to, "hello"
    msg.set_content("body\n")
    return msg


def ended_job(status: str, **fields) -> Job:
    now = datetime.now(UTC)
    values = dict(
        id=uuid.uuid4(), user_id="u", module="tags", format="xlsx", strategy="background",
        status=status, total_rows=10, processed_rows=10,
        options={"notify": {"email": True, "address": "ann@example.com"}}, checkpoint=None,
        flow_run_id=None, file_key=None, file_bytes=None, sha256=None, error_code=None,
        error=None, created_at=now, started_at=now, finished_at=now, expires_at=None, attempt=1,
    )  # fmt: skip
    return Job(**(values | fields))


def test_a_completed_exports_email_has_rows_size_link_and_expiry(tmp_path):
    settings = smtp_settings(25, storage_url=(tmp_path / "files").as_uri())
    expires = datetime.now(UTC) + timedelta(hours=5)
    job = ended_job("completed", file_key="exports/x/tags.xlsx", file_bytes=1_234_567,
                    expires_at=expires)  # fmt: skip
    msg = notify_email.compose(job, settings, Storage.from_settings(settings))
    assert msg["Subject"] == "Your tags export (XLSX) is ready: 10 rows"
    assert (msg["To"], msg["From"]) == ("ann@example.com", "exports@example.com")
    text = msg.get_content()
    assert "Size: 1.2 MB" in text and expires.strftime("%Y-%m-%d %H:%M UTC") in text
    assert "/downloads/exports/x/tags.xlsx?expires=" in text


def test_a_failed_exports_email_has_its_code_and_message():
    job = ended_job("failed", error_code="timeout", error="the export took too long")
    msg = notify_email.compose(job, smtp_settings(25), None)
    assert msg["Subject"] == "Your tags export (XLSX) failed"
    assert "Code: timeout\nReason: the export took too long" in msg.get_content()


def test_plain_delivery(smtp_server):
    port, inbox = smtp_server
    notify_email.send(message(), smtp_settings(port, smtp_host="127.0.0.1"))
    assert inbox.envelopes == [("exports@example.com", ["ann@example.com"])]
    assert inbox.messages[0]["Subject"] == "hello"


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_encrypted_delivery_checks_the_servers_certificate(security, test_ca, ca_file):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    test_ca.issue_cert("localhost").configure_cert(context)
    inbox, port = Inbox(), free_port()
    tls = {"tls_context": context, "require_starttls": True}
    if security == "tls":
        tls = {"ssl_context": context}
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **tls)
    controller.start()
    try:
        settings = smtp_settings(port, smtp_security=security, notify_ca_file=ca_file)
        notify_email.send(message(), settings)
        assert len(inbox.messages) == 1
        # Without the test CA the system's CAs do not know the certificate: refused for good.
        with pytest.raises(NotificationFailed, match="TLS"):
            notify_email.send(message(), smtp_settings(port, smtp_security=security))
    finally:
        controller.stop()
    assert len(inbox.messages) == 1


class Refusing(Inbox):
    """Answers RCPT with a fixed reply."""

    def __init__(self, reply: str) -> None:
        super().__init__()
        self.reply = reply

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        return self.reply


@pytest.mark.parametrize(
    ("reply", "error"),
    [("451 try again later", NotificationUnavailable), ("550 no such user", NotificationFailed)],
)
def test_a_temporary_refusal_is_worth_a_retry_and_a_permanent_one_is_not(reply, error):
    port = free_port()
    controller = Controller(Refusing(reply), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with pytest.raises(error, match=reply[:3]):
            notify_email.send(message(), smtp_settings(port, smtp_host="127.0.0.1"))
    finally:
        controller.stop()


def test_no_server_listening_is_worth_a_retry():
    with pytest.raises(NotificationUnavailable, match="could not be reached"):
        notify_email.send(message(), smtp_settings(free_port(), smtp_host="127.0.0.1"))
